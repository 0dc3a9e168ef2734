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
	SecretStore
	APIKeyStore
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

// VaultEntry is a row of mesh.vault_entry (E.10). Ciphertext, Nonce and
// SealedKey are the client's own encryption (opaque base64 strings); the
// store seals them again at rest. They are empty in VaultList.
type VaultEntry struct {
	Key                          string
	Ciphertext, Nonce, SealedKey string
	EntryType                    string // "env" or "file"
	MountPath, Description       string
	UpdatedAt                    time.Time
}

// Webhook is an active row of mesh.webhook (E.11).
type Webhook struct {
	ID, Name, Secret string
	CreatedBy        string // member id
	CreatedAt        time.Time
}

// SecretStore keeps vault entries and webhooks, whose secrets it seals at
// rest with BROKER_ENCRYPTION_KEY. Every vault method is scoped to one
// member of one mesh.
type SecretStore interface {
	// SealsSecrets reports whether the store has an encryption key; without
	// one collab answers vault and webhook verbs with their typed fallback
	// and never stores a secret.
	SealsSecrets() bool
	// VaultSet upserts the member's entry by key (every field replaced);
	// ErrLimit when the member already has maxEntries other keys.
	VaultSet(ctx context.Context, meshID, memberID string, e VaultEntry, maxEntries int) error
	// VaultList returns the member's entries by key, without secrets.
	VaultList(ctx context.Context, meshID, memberID string) ([]VaultEntry, error)
	// VaultDelete deletes the member's entry and reports whether it existed.
	VaultDelete(ctx context.Context, meshID, memberID, key string) (bool, error)
	// VaultGet returns the member's entries among keys, secrets opened.
	VaultGet(ctx context.Context, meshID, memberID string, keys []string) ([]VaultEntry, error)

	// CreateWebhook inserts an active webhook: ErrExists when an active
	// one has the name, ErrLimit when the mesh has maxActive already.
	CreateWebhook(ctx context.Context, meshID string, w *Webhook, maxActive int) error
	// ListWebhooks returns the mesh's active webhooks by name, secrets
	// opened.
	ListWebhooks(ctx context.Context, meshID string) ([]Webhook, error)
	// DeleteWebhook deactivates the active webhook name if memberID
	// created it or admin is set: meshd.ErrNotFound, or ErrForbidden.
	DeleteWebhook(ctx context.Context, meshID, name, memberID string, admin bool) error
}

// APIKey is a row of mesh.api_key (E.3), never with its secret.
type APIKey struct {
	ID, Label, Prefix string
	Capabilities      []string
	TopicScopes       []string // nil: every topic
	IssuedBy          string   // member id
	CreatedAt         time.Time
	LastUsedAt        *time.Time
	RevokedAt         *time.Time
	ExpiresAt         *time.Time
}

// APIKeyStore keeps API keys, hashed.
type APIKeyStore interface {
	// CreateAPIKey inserts k (ID and CreatedAt are set) with the SHA-256
	// of secret (the secret itself is never stored); ErrLimit when the mesh
	// has maxLive live keys.
	CreateAPIKey(ctx context.Context, meshID string, k *APIKey, secret string, maxLive int) error
	// ListAPIKeys returns the mesh's keys, revoked and expired included,
	// newest first, at most limit.
	ListAPIKeys(ctx context.Context, meshID string, limit int) ([]APIKey, error)
	// RevokeAPIKey revokes (idempotently) the key whose id is id or starts
	// with it, if memberID issued it or admin is set, and returns its full
	// id: meshd.ErrNotFound, meshd.ErrAmbiguous, or ErrForbidden.
	RevokeAPIKey(ctx context.Context, meshID, id, memberID string, admin bool) (string, error)
}
