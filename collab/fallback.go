package collab

// fallback builds the typed reply of PROTOCOL-EXT E.14.5 for req's verb:
// what a broker sends when it does not implement the verb, and the frame a
// rejection or failure decorates. Every frame echoes _reqId. The client's
// outcome for each is in docs/protocol.md Part C.
func fallback(req *request) []frame {
	return fallbackWithReason(req, Unsupported[verbs[req.typ].group])
}

// fallbackWithReason is fallback with why as the reason the verb is not
// served (vault and webhooks without an encryption key).
func fallbackWithReason(req *request, why string) []frame {
	typ := req.typ
	msg := "unsupported on this broker: " + verbs[typ].group
	if why != "" {
		msg += " (" + why + ")"
	}
	one := func(typ string, kv ...any) []frame {
		f := newFrame(typ, req)
		for i := 0; i+1 < len(kv); i += 2 {
			f[kv[i].(string)] = kv[i+1]
		}
		return []frame{f}
	}
	empty := []any{}
	switch typ {
	case "topic_create", "apikey_create", "share_skill", "grant_file_access", "create_webhook",
		"delete_webhook", "mcp_register", "unwatch":
		return one("error", "code", "unsupported", "message", msg)
	case "topic_join", "topic_leave", "topic_mark_read", "forget", "claim_task", "complete_task",
		"share_context", "delete_file", "vector_delete", "mesh_execute", "mcp_unregister",
		"mcp_call_response", "peer_file_response", "peer_dir_response":
		return []frame{inertAck(req, "unsupported: "+typ)}
	case "topic_list":
		return one("topic_list_response", "topics", empty)
	case "topic_members":
		return one("topic_members_response", "topic", req.str("topic"), "members", empty)
	case "topic_history":
		return one("topic_history_response", "topic", req.str("topic"), "messages", empty)
	case "apikey_list":
		return one("apikey_list_response", "keys", empty)
	case "apikey_revoke":
		return one("apikey_revoke_response", "status", "not_found")
	case "remember":
		return one("memory_stored")
	case "recall":
		a := newFrame("memory_results", req)
		a["memories"] = empty
		b := newFrame("memory_recall_result", req)
		b["matches"] = empty
		return []frame{a, b}
	case "create_task":
		return one("task_created")
	case "list_tasks":
		return one("task_list", "tasks", empty)
	case "mesh_info":
		return one("mesh_info_result", "mesh", "", "peers", 0, "groups", empty, "stateKeys", empty,
			"memoryCount", 0, "fileCount", 0, "tasks", map[string]int{"open": 0, "claimed": 0, "done": 0},
			"streams", empty, "tables", empty, "collections", empty, "yourName", "unknown", "yourGroups", empty)
	case "get_context":
		return one("context_results", "contexts", empty)
	case "list_contexts":
		return one("context_list", "contexts", empty)
	case "get_skill":
		return one("skill_data", "skill", nil)
	case "list_skills":
		return one("skill_list", "skills", empty)
	case "remove_skill":
		return one("skill_ack", "name", req.str("name"), "action", "not_found")
	case "skill_deploy":
		return one("skill_deploy_ack", "name", "unknown", "files", empty)
	case "get_file":
		return one("file_url", "fileId", req.str("fileId"))
	case "list_files":
		return one("file_list", "files", empty)
	case "file_status":
		return one("file_status_result", "fileId", req.str("fileId"), "accesses", empty)
	case "vault_set", "vault_delete":
		return one("vault_ack", "key", req.str("key"), "action", "not_found")
	case "vault_list":
		return one("vault_list_result", "entries", empty)
	case "vault_get":
		return one("vault_get_result", "entries", empty)
	case "list_webhooks":
		return one("webhook_list", "webhooks", empty)
	case "vector_store":
		return one("vector_stored")
	case "vector_search":
		return one("vector_results", "results", empty)
	case "list_collections":
		return one("collection_list", "collections", empty)
	case "graph_query", "graph_execute":
		return one("graph_result", "records", empty)
	case "mesh_query":
		return one("mesh_query_result")
	case "mesh_schema":
		return one("mesh_schema_result", "tables", empty)
	case "mcp_list":
		return one("mcp_list_result", "servers", empty)
	case "mcp_catalog":
		return one("mcp_catalog_result", "services", empty)
	case "mcp_call":
		return one("mcp_call_result", "error", msg)
	case "mcp_deploy", "mcp_update", "mcp_undeploy":
		return one("mcp_deploy_status", "server_name", req.str("server_name"), "status", "failed", "error", msg)
	case "mcp_logs":
		return one("mcp_logs_result", "server_name", req.str("server_name"), "lines", empty)
	case "mcp_schema":
		return one("mcp_schema_result", "server_name", req.str("server_name"), "tools", empty)
	case "mcp_scope":
		return one("mcp_scope_result", "server_name", req.str("server_name"), "scope", map[string]string{"type": "peer"}, "deployed_by", "unknown")
	case "watch":
		return one("watch_ack", "error", msg)
	case "watch_list":
		return one("watch_list_result", "watches", empty)
	case "peer_file_request":
		return one("peer_file_response_forward", "filePath", req.str("filePath"), "error", msg)
	case "peer_dir_request":
		return one("peer_dir_response_forward", "dirPath", req.str("dirPath"), "error", msg)
	}
	// Unreachable for the 66; a new verb without a fallback still answers.
	return one("error", "code", "unsupported", "message", msg)
}

func frames(fs []frame) []any {
	out := make([]any, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}
