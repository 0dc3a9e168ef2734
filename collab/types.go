package collab

import "context"

// handleFunc answers one request; an error becomes a rejection frame.
type handleFunc func(h *Handler, ctx context.Context, p Peer, req *request) ([]any, error)

type verb struct {
	group  string
	handle handleFunc // nil: unsupported, always the typed fallback
	// sealed: the verb stores secrets, so without an encryption key
	// (Store.SealsSecrets false) it answers its typed fallback.
	sealed bool
}

// order is E.1's list of the 66 request types.
var order = []string{
	"topic_create", "topic_list", "topic_join", "topic_leave", "topic_members", "topic_history", "topic_mark_read",
	"apikey_create", "apikey_list", "apikey_revoke",
	"remember", "recall", "forget",
	"create_task", "claim_task", "complete_task", "list_tasks",
	"mesh_info",
	"share_context", "get_context", "list_contexts",
	"share_skill", "get_skill", "list_skills", "remove_skill", "skill_deploy",
	"get_file", "list_files", "file_status", "grant_file_access", "delete_file",
	"vault_set", "vault_list", "vault_delete", "vault_get",
	"create_webhook", "list_webhooks", "delete_webhook",
	"vector_store", "vector_search", "vector_delete", "list_collections",
	"graph_query", "graph_execute",
	"mesh_query", "mesh_execute", "mesh_schema",
	"mcp_register", "mcp_unregister", "mcp_list", "mcp_call", "mcp_call_response",
	"mcp_deploy", "mcp_undeploy", "mcp_update", "mcp_logs", "mcp_scope", "mcp_schema", "mcp_catalog",
	"watch", "unwatch", "watch_list",
	"peer_file_request", "peer_file_response", "peer_dir_request", "peer_dir_response",
}

// Unsupported maps each group collab answers only with typed fallbacks to
// the reason (docs/protocol.md Part C). Vault and webhooks also fall back,
// with their own reason, on a broker without BROKER_ENCRYPTION_KEY.
var Unsupported = map[string]string{
	"files":        "needs object storage for the bytes, and the 1.37 CLI uploads without credentials",
	"vectors":      "needs a vector index (Qdrant or pgvector) and an embedding model",
	"graph":        "needs a graph database (Neo4j)",
	"mesh SQL":     "unsafe as designed upstream: arbitrary SQL with the broker's privileges",
	"MCP registry": "not implemented: needs a cross-replica registry and call relay",
	"MCP deploy":   "needs a service runner",
	"URL watches":  "not implemented: outbound polling needs SSRF guards and a single owner per watch",
	"peer relay":   "not implemented: needs cross-replica routing by pubkey",
	"skill deploy": "a stub upstream too",
}

var verbs = map[string]verb{
	"topic_create":    {group: "topics", handle: (*Handler).topicCreate},
	"topic_list":      {group: "topics", handle: (*Handler).topicList},
	"topic_join":      {group: "topics", handle: (*Handler).topicJoin},
	"topic_leave":     {group: "topics", handle: (*Handler).topicLeave},
	"topic_members":   {group: "topics", handle: (*Handler).topicMembers},
	"topic_history":   {group: "topics", handle: (*Handler).topicHistory},
	"topic_mark_read": {group: "topics", handle: (*Handler).topicMarkRead},

	"apikey_create": {group: "api keys", handle: (*Handler).apikeyCreate},
	"apikey_list":   {group: "api keys", handle: (*Handler).apikeyList},
	"apikey_revoke": {group: "api keys", handle: (*Handler).apikeyRevoke},

	"remember": {group: "memory", handle: (*Handler).remember},
	"recall":   {group: "memory", handle: (*Handler).recall},
	"forget":   {group: "memory", handle: (*Handler).forget},

	"create_task":   {group: "tasks", handle: (*Handler).createTask},
	"claim_task":    {group: "tasks", handle: (*Handler).claimTask},
	"complete_task": {group: "tasks", handle: (*Handler).completeTask},
	"list_tasks":    {group: "tasks", handle: (*Handler).listTasks},

	"mesh_info": {group: "mesh info", handle: (*Handler).meshInfo},

	"share_context": {group: "contexts", handle: (*Handler).shareContext},
	"get_context":   {group: "contexts", handle: (*Handler).getContext},
	"list_contexts": {group: "contexts", handle: (*Handler).listContexts},

	"share_skill":  {group: "skills", handle: (*Handler).shareSkill},
	"get_skill":    {group: "skills", handle: (*Handler).getSkill},
	"list_skills":  {group: "skills", handle: (*Handler).listSkills},
	"remove_skill": {group: "skills", handle: (*Handler).removeSkill},
	"skill_deploy": {group: "skill deploy"},

	"get_file":          {group: "files"},
	"list_files":        {group: "files"},
	"file_status":       {group: "files"},
	"grant_file_access": {group: "files"},
	"delete_file":       {group: "files"},

	"vault_set":    {group: "vault", handle: (*Handler).vaultSet, sealed: true},
	"vault_list":   {group: "vault", handle: (*Handler).vaultList, sealed: true},
	"vault_delete": {group: "vault", handle: (*Handler).vaultDelete, sealed: true},
	"vault_get":    {group: "vault", handle: (*Handler).vaultGet, sealed: true},

	"create_webhook": {group: "webhooks", handle: (*Handler).createWebhook, sealed: true},
	"list_webhooks":  {group: "webhooks", handle: (*Handler).listWebhooks, sealed: true},
	"delete_webhook": {group: "webhooks", handle: (*Handler).deleteWebhook, sealed: true},

	"vector_store":     {group: "vectors"},
	"vector_search":    {group: "vectors"},
	"vector_delete":    {group: "vectors"},
	"list_collections": {group: "vectors"},

	"graph_query":   {group: "graph"},
	"graph_execute": {group: "graph"},

	"mesh_query":   {group: "mesh SQL"},
	"mesh_execute": {group: "mesh SQL"},
	"mesh_schema":  {group: "mesh SQL"},

	"mcp_register":      {group: "MCP registry"},
	"mcp_unregister":    {group: "MCP registry"},
	"mcp_list":          {group: "MCP registry"},
	"mcp_call":          {group: "MCP registry"},
	"mcp_call_response": {group: "MCP registry"},

	"mcp_deploy":   {group: "MCP deploy"},
	"mcp_undeploy": {group: "MCP deploy"},
	"mcp_update":   {group: "MCP deploy"},
	"mcp_logs":     {group: "MCP deploy"},
	"mcp_scope":    {group: "MCP deploy"},
	"mcp_schema":   {group: "MCP deploy"},
	"mcp_catalog":  {group: "MCP deploy"},

	"watch":      {group: "URL watches"},
	"unwatch":    {group: "URL watches"},
	"watch_list": {group: "URL watches"},

	"peer_file_request":  {group: "peer relay"},
	"peer_file_response": {group: "peer relay"},
	"peer_dir_request":   {group: "peer relay"},
	"peer_dir_response":  {group: "peer relay"},
}

// Types lists the 66 request types Handle owns, in PROTOCOL-EXT E.1 order.
func Types() []string { return append([]string(nil), order...) }

// Group names the verb group of typ ("" when Handle does not own it).
func Group(typ string) string { return verbs[typ].group }

// Implemented reports whether typ gets a real answer from a Handler (as
// opposed to its typed fallback).
func Implemented(typ string) bool { return verbs[typ].handle != nil }
