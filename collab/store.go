package collab

import (
	"context"
	"encoding/json"
	"time"
)

// Store is everything collab keeps in PostgreSQL, one small interface per
// verb group; store.Store implements it (store/collab_*.go). Every method
// is scoped to a mesh: a row of another mesh is never found, changed or
// counted. Lookups that find nothing return meshd.ErrNotFound.
type Store interface {
	MemoryStore
	TaskStore
	ContextStore
	SkillStore
	InfoStore
	TopicStore
}

// Memory is a row of mesh.memory (E.4).
type Memory struct {
	ID           string
	Content      string
	Tags         []string
	AuthorID     string
	AuthorName   string
	RememberedAt time.Time
}

// MemoryStore keeps memories.
type MemoryStore interface {
	// Remember inserts m (ID and RememberedAt are set).
	Remember(ctx context.Context, meshID string, m *Memory) error
	// Recall runs the full-text search: English stemming over content and
	// tags, words ANDed, ranked, at most limit rows.
	Recall(ctx context.Context, meshID, query string, limit int) ([]Memory, error)
	// Forget soft-deletes a live memory if memberID wrote it or admin is
	// set: meshd.ErrNotFound, or ErrForbidden for someone else's memory.
	Forget(ctx context.Context, meshID, memoryID, memberID string, admin bool) error
}

// Task is a row of mesh.task (E.5).
type Task struct {
	ID, Title, Assignee, ClaimedBy, Status, Priority, CreatedBy string
	Tags                                                        []string
	Result                                                      string
	CreatedAt                                                   time.Time
}

// TaskStore keeps tasks. Ids may be given by a unique prefix of at least
// MinIDPrefix characters (the CLI shows 8).
type TaskStore interface {
	// CreateTask inserts t as open (ID and CreatedAt are set).
	CreateTask(ctx context.Context, meshID, memberID string, t *Task) error
	// ClaimTask sets an open task claimed: meshd.ErrNotFound,
	// meshd.ErrAmbiguous, or ErrNotClaimable when it is not open.
	ClaimTask(ctx context.Context, meshID, id, presenceID, memberID, name string) error
	// CompleteTask sets a task done with result (from any status, as
	// upstream): meshd.ErrNotFound or meshd.ErrAmbiguous.
	CompleteTask(ctx context.Context, meshID, id, result string) error
	// ListTasks lists tasks newest first; status and assignee filter when
	// non-empty.
	ListTasks(ctx context.Context, meshID, status, assignee string, limit int) ([]Task, error)
}

// MinIDPrefix is the shortest id prefix claim_task/complete_task accept.
const MinIDPrefix = 6

// SharedContext is a row of mesh.context (E.7).
type SharedContext struct {
	PeerName    string
	Summary     string
	FilesRead   []string
	KeyFindings []string
	Tags        []string
	UpdatedAt   time.Time
}

// ContextStore keeps one context per member.
type ContextStore interface {
	// ShareContext upserts the member's context and returns its row id.
	ShareContext(ctx context.Context, meshID, memberID, presenceID string, c SharedContext) (string, error)
	// SearchContexts returns contexts whose summary contains query (case
	// insensitive, literally) or whose tags hold it, newest first.
	SearchContexts(ctx context.Context, meshID, query string, limit int) ([]SharedContext, error)
	// ListContexts returns every context of the mesh, newest first.
	ListContexts(ctx context.Context, meshID string) ([]SharedContext, error)
}

// Skill is a row of mesh.skill (E.8).
type Skill struct {
	Name, Description, Instructions string
	Tags                            []string
	Author                          string
	Manifest                        json.RawMessage // nil when absent
	CreatedAt                       time.Time
}

// SkillStore keeps skills, unique by name per mesh.
type SkillStore interface {
	// ShareSkill upserts by name; the caller becomes the author.
	ShareSkill(ctx context.Context, meshID, memberID string, s Skill) error
	GetSkill(ctx context.Context, meshID, name string) (Skill, error)
	// ListSkills lists skills by name; query (literal, case-insensitive)
	// filters on name, description and tags when non-empty.
	ListSkills(ctx context.Context, meshID, query string) ([]Skill, error)
	// RemoveSkill deletes by name and reports whether a row went.
	RemoveSkill(ctx context.Context, meshID, name string) (bool, error)
}

// MeshStats is what mesh_info aggregates (E.6).
type MeshStats struct {
	Peers       int      // live presences, grace leases included
	Groups      []string // distinct "@name" of their groups, first seen first
	StateKeys   []string
	MemoryCount int
	Tasks       map[string]int // always has open, claimed and done
	Streams     []string
}

// InfoStore aggregates mesh_info.
type InfoStore interface {
	MeshStats(ctx context.Context, meshID string) (MeshStats, error)
}
