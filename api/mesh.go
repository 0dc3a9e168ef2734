package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshd/meshd"
)

// Mesh name and slug limits: slugs appear in URLs, invite tokens and every
// CLI table, names in peer lists; a mesh needs neither to be long.
const (
	maxMeshName = 100
	maxSlugLen  = 48
)

// handleMeshCreate is POST /cli/mesh/create {name, pubkey, slug?,
// display_name?} (B.9.5 step 2; display_name, the owner's name in the
// mesh, is a meshd extension: default "<name>-owner" as upstream). Unlike upstream it validates everything before writing anything
// (A.3-16): the mesh, its keys and the owner's member row are one
// transaction.
func (s *Server) handleMeshCreate(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Name   string `json:"name"`
		Pubkey string `json:"pubkey"`
		Slug   string `json:"slug"`
		// DisplayName is the owner member's display name (A.3).
		DisplayName string `json:"display_name"`
	}
	if !body.decode(w, &req) {
		return
	}
	user, ok := s.cliAuth(w, r, body.legacyUser)
	if !ok {
		return
	}
	name := strings.TrimSpace(req.Name)
	display := strings.TrimSpace(req.DisplayName)
	slug := slugify(req.Slug)
	if req.Slug == "" {
		slug = slugify(name)
	}
	switch {
	case meshNameProblem(name) != "":
		cliError(w, http.StatusBadRequest, meshNameProblem(name))
		return
	case !isHex64(req.Pubkey):
		cliError(w, http.StatusBadRequest, "pubkey required (64 hex chars)")
		return
	case slug == "":
		cliError(w, http.StatusBadRequest, "slug must contain a letter or digit (a-z, 0-9)")
		return
	case utf8.RuneCountInString(display) > maxMeshName:
		cliError(w, http.StatusBadRequest, "display_name too long (max 100 characters)")
		return
	}
	if display == "" {
		display = name + "-owner"
	}
	s.createMesh(w, r, user, name, slug, display, strings.ToLower(req.Pubkey))
}

// createMesh generates the mesh's owner keypair and root key and writes the
// mesh with its owner member (role admin, named display).
func (s *Server) createMesh(w http.ResponseWriter, r *http.Request, user, name, slug, display, pubkey string) {
	ownerPub, ownerSec, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err), "owner key generation")
		return
	}
	mesh := meshd.Mesh{Slug: slug, Name: name, OwnerUserID: user, OwnerPubkey: hex.EncodeToString(ownerPub)}
	owner := meshd.Member{UserID: user, Pubkey: pubkey, DisplayName: display, Role: "admin"}
	created, err := s.cfg.Store.CreateOwnedMesh(r.Context(), &mesh, hex.EncodeToString(ownerSec), newRootKey(), &owner)
	switch {
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), "create mesh")
		return
	case !created:
		cliError(w, http.StatusConflict, "Too many meshes with this name")
		return
	}
	s.log.Info().Str("mesh_id", mesh.ID).Str("slug", mesh.Slug).Str("user_id", user).Msg("mesh created")
	writeJSON(w, http.StatusOK, map[string]any{"id": mesh.ID, "slug": mesh.Slug, "name": mesh.Name, "member_id": owner.ID})
}

// newRootKey is a mesh root key: 32 random bytes, base64url without padding
// (B.12).
func newRootKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// slugify applies upstream's rule (B.9.5 step 2): lower-case, runs of
// anything but [a-z0-9] become "-", edge dashes trimmed; meshd also caps
// the length at maxSlugLen.
func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(c)
			dash = false
			continue
		}
		dash = true
	}
	out := b.String()
	if len(out) > maxSlugLen {
		out = strings.TrimRight(out[:maxSlugLen], "-")
	}
	return out
}

// meshEntry is one row of GET /cli/meshes.
type meshEntry struct {
	ID          string `json:"id"`
	Slug        string `json:"slug"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	IsOwner     bool   `json:"is_owner"`
	MemberCount int    `json:"member_count"`
	ActivePeers int    `json:"active_peers"`
	JoinedAt    string `json:"joined_at"`
	BrokerURL   string `json:"broker_url"`
}

// handleMeshList is GET /cli/meshes: the caller's live meshes (B.9.4). The
// legacy shim reads ?user_id= since a GET has no body.
func (s *Server) handleMeshList(w http.ResponseWriter, r *http.Request) {
	user, ok := s.cliAuth(w, r, r.URL.Query().Get("user_id"))
	if !ok {
		return
	}
	broker := s.publicWSURL(r)
	out := []meshEntry{}
	err := s.cfg.Store.UserMeshes(r.Context(), user, func(ms meshd.Mesh, role string, joined time.Time, members, active int) {
		out = append(out, meshEntry{
			ID: ms.ID, Slug: ms.Slug, Name: ms.Name, Role: role, IsOwner: ms.OwnerUserID == user,
			MemberCount: members, ActivePeers: active, JoinedAt: joined.UTC().Format(time.RFC3339), BrokerURL: broker,
		})
	})
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err), "list meshes")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"meshes": out})
}

// ownedMesh authenticates the caller and finds the mesh named by the path's
// slug: 404 Mesh not found; with forbidden non-empty, a caller who is not
// the owner gets 403 forbidden. On failure the response is written.
func (s *Server) ownedMesh(w http.ResponseWriter, r *http.Request, body *jsonBody, forbidden string) (meshd.Mesh, string, bool) {
	user, ok := s.cliAuth(w, r, body.legacyUser)
	if !ok {
		return meshd.Mesh{}, "", false
	}
	ms, err := s.cfg.Store.MeshBySlug(r.Context(), r.PathValue("slug"))
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		cliError(w, http.StatusNotFound, "Mesh not found")
		return ms, "", false
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), "mesh by slug")
		return ms, "", false
	case forbidden != "" && ms.OwnerUserID != user:
		cliError(w, http.StatusForbidden, forbidden)
		return ms, "", false
	}
	return ms, user, true
}

// handleMeshDelete is DELETE /cli/mesh/:slug (owner only): it archives the
// mesh, freeing its slug; members can no longer hello or join.
func (s *Server) handleMeshDelete(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	ms, user, ok := s.ownedMesh(w, r, body, "Only the mesh owner can delete it")
	if !ok {
		return
	}
	if !s.meshWritten(w, r, s.cfg.Store.ArchiveMesh(r.Context(), ms.ID), "archive mesh") {
		return
	}
	s.log.Info().Str("mesh_id", ms.ID).Str("slug", ms.Slug).Str("user_id", user).Msg("mesh archived")
	// Every replica closes the mesh's sockets (4003 mesh_archived); one
	// that misses this finds the archive on its next sweep (A.3-23).
	if err := s.cfg.Fanout.Publish(r.Context(), meshd.MeshTopic(ms.ID), []byte(meshd.MeshArchivedEvent)); err != nil {
		s.log.Warn().Err(err).Str("mesh_id", ms.ID).Msg("publish mesh_archived")
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "deleted": ms.Slug})
}

// handleMeshRename is POST /cli/mesh/:slug/rename {name} (owner only, a
// meshd extension, A.3-34): the name changes, the slug stays.
func (s *Server) handleMeshRename(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if !body.decode(w, &req) {
		return
	}
	name := strings.TrimSpace(req.Name)
	if msg := meshNameProblem(name); msg != "" {
		cliError(w, http.StatusBadRequest, msg)
		return
	}
	ms, user, ok := s.ownedMesh(w, r, body, "Only the mesh owner can rename it")
	if !ok || !s.meshWritten(w, r, s.cfg.Store.RenameMesh(r.Context(), ms.ID, name), "rename mesh") {
		return
	}
	s.log.Info().Str("mesh_id", ms.ID).Str("slug", ms.Slug).Str("user_id", user).Msg("mesh renamed")
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "id": ms.ID, "slug": ms.Slug, "name": name})
}

// meshNameProblem is the 400 message for a bad (trimmed) mesh name, or "".
func meshNameProblem(name string) string {
	switch {
	case name == "":
		return "name required"
	case utf8.RuneCountInString(name) > maxMeshName:
		return "name too long (max 100 characters)"
	}
	return ""
}

// meshWritten answers a failed write to a live mesh (404 when it was
// archived concurrently, else 500) and reports whether err was nil.
func (s *Server) meshWritten(w http.ResponseWriter, r *http.Request, err error, what string) bool {
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		cliError(w, http.StatusNotFound, "Mesh not found")
		return false
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), what)
		return false
	}
	return true
}

// handleGrants is POST /cli/mesh/:slug/grants {grants: {pubkey: [caps] |
// null}} (B.7): merged into the caller's own member row, null deleting.
func (s *Server) handleGrants(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if g := body.fields["grants"]; len(g) == 0 || g[0] != '{' {
		cliError(w, http.StatusBadRequest, "grants required")
		return
	}
	var req struct {
		Grants meshd.Grants `json:"grants"`
	}
	if !body.decode(w, &req) || !checkGrants(w, req.Grants) {
		return
	}
	ms, user, ok := s.ownedMesh(w, r, body, "")
	if !ok {
		return
	}
	merged, err := s.cfg.Store.MergeGrants(r.Context(), ms.ID, user, req.Grants)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		cliError(w, http.StatusForbidden, "Not a member of this mesh")
		return
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), "merge grants")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "grants": merged})
}
