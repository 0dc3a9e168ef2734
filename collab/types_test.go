package collab_test

import (
	"testing"

	"github.com/meshd/meshd/collab"
)

// TestEveryTypeAnswers sends each of the 66 request types through Handle
// (with the fields the 1.37 client sends) and checks that every one gets,
// at once, the reply type the client waits for, echoing _reqId and never
// carrying the request id in "id" (E.14.4). The store has an encryption
// key, so vault and webhooks give their real replies.
func TestEveryTypeAnswers(t *testing.T) {
	f := newKeyedFixture(t, collab.Config{}, testKeyring(t))
	cases := map[string]struct {
		fields string
		want   []string // reply types in order
	}{
		"topic_create":       {`"name":"general"`, []string{"topic_created"}},
		"topic_list":         {``, []string{"topic_list_response"}},
		"topic_join":         {`"topic":"general"`, []string{"ack"}},
		"topic_leave":        {`"topic":"general"`, []string{"ack"}},
		"topic_members":      {`"topic":"general"`, []string{"topic_members_response"}},
		"topic_history":      {`"topic":"general"`, []string{"topic_history_response"}},
		"topic_mark_read":    {`"topic":"general"`, []string{"ack"}},
		"apikey_create":      {`"label":"x","capabilities":["read"]`, []string{"apikey_created"}},
		"apikey_list":        {``, []string{"apikey_list_response"}},
		"apikey_revoke":      {`"id":"abcdef"`, []string{"apikey_revoke_response"}},
		"remember":           {`"content":"the deploy key lives in vault"`, []string{"memory_stored"}},
		"recall":             {`"query":"deploy"`, []string{"memory_results", "memory_recall_result"}},
		"forget":             {`"memoryId":"nope"`, []string{"ack"}},
		"create_task":        {`"title":"ship it"`, []string{"task_created"}},
		"claim_task":         {`"taskId":"000000"`, []string{"ack"}},
		"complete_task":      {`"taskId":"000000"`, []string{"ack"}},
		"list_tasks":         {``, []string{"task_list"}},
		"mesh_info":          {``, []string{"mesh_info_result"}},
		"share_context":      {`"summary":"reading broker code"`, []string{"context_shared"}},
		"get_context":        {`"query":"broker"`, []string{"context_results"}},
		"list_contexts":      {``, []string{"context_list"}},
		"share_skill":        {`"name":"review","description":"d","instructions":"do it"`, []string{"skill_ack"}},
		"get_skill":          {`"name":"review"`, []string{"skill_data"}},
		"list_skills":        {``, []string{"skill_list"}},
		"remove_skill":       {`"name":"review"`, []string{"skill_ack"}},
		"skill_deploy":       {`"source":"x"`, []string{"skill_deploy_ack"}},
		"get_file":           {`"fileId":"f1"`, []string{"file_url"}},
		"list_files":         {``, []string{"file_list"}},
		"file_status":        {`"fileId":"f1"`, []string{"file_status_result"}},
		"grant_file_access":  {`"fileId":"f1","peerPubkey":"p","sealedKey":"k"`, []string{"error"}},
		"delete_file":        {`"fileId":"f1"`, []string{"ack"}},
		"vault_set":          {`"key":"K","ciphertext":"c","nonce":"n","sealed_key":"s","entry_type":"env"`, []string{"vault_ack"}},
		"vault_list":         {``, []string{"vault_list_result"}},
		"vault_delete":       {`"key":"K"`, []string{"vault_ack"}},
		"vault_get":          {`"keys":["K"]`, []string{"vault_get_result"}},
		"create_webhook":     {`"name":"ci"`, []string{"webhook_ack"}},
		"list_webhooks":      {``, []string{"webhook_list"}},
		"delete_webhook":     {`"name":"ci"`, []string{"webhook_ack"}},
		"vector_store":       {`"collection":"c","text":"t"`, []string{"vector_stored"}},
		"vector_search":      {`"collection":"c","query":"t"`, []string{"vector_results"}},
		"vector_delete":      {`"collection":"c","id":"i"`, []string{"ack"}},
		"list_collections":   {``, []string{"collection_list"}},
		"graph_query":        {`"cypher":"MATCH (n) RETURN n"`, []string{"graph_result"}},
		"graph_execute":      {`"cypher":"CREATE (n)"`, []string{"graph_result"}},
		"mesh_query":         {`"sql":"select 1"`, []string{"mesh_query_result"}},
		"mesh_execute":       {`"sql":"create table x()"`, []string{"ack"}},
		"mesh_schema":        {``, []string{"mesh_schema_result"}},
		"mcp_register":       {`"serverName":"s","description":"d","tools":[]`, []string{"error"}},
		"mcp_unregister":     {`"serverName":"s"`, []string{"ack"}},
		"mcp_list":           {``, []string{"mcp_list_result"}},
		"mcp_call":           {`"serverName":"s","toolName":"t","args":{}`, []string{"mcp_call_result"}},
		"mcp_call_response":  {`"callId":"c","result":1`, []string{"ack"}},
		"mcp_deploy":         {`"server_name":"s","source":{"type":"npx","package":"p"}`, []string{"mcp_deploy_status"}},
		"mcp_undeploy":       {`"server_name":"s"`, []string{"mcp_deploy_status"}},
		"mcp_update":         {`"server_name":"s"`, []string{"mcp_deploy_status"}},
		"mcp_logs":           {`"server_name":"s"`, []string{"mcp_logs_result"}},
		"mcp_scope":          {`"server_name":"s"`, []string{"mcp_scope_result"}},
		"mcp_schema":         {`"server_name":"s"`, []string{"mcp_schema_result"}},
		"mcp_catalog":        {``, []string{"mcp_catalog_result"}},
		"watch":              {`"url":"http://example.com"`, []string{"watch_ack"}},
		"unwatch":            {`"watchId":"w_1"`, []string{"error"}},
		"watch_list":         {``, []string{"watch_list_result"}},
		"peer_file_request":  {`"targetPubkey":"p","filePath":"a.txt"`, []string{"peer_file_response_forward"}},
		"peer_file_response": {`"requesterPubkey":"p","filePath":"a.txt"`, []string{"ack"}},
		"peer_dir_request":   {`"targetPubkey":"p","dirPath":"."`, []string{"peer_dir_response_forward"}},
		"peer_dir_response":  {`"requesterPubkey":"p","dirPath":"."`, []string{"ack"}},
	}
	types := collab.Types()
	if len(types) != 66 {
		t.Fatalf("Types() has %d entries, want 66", len(types))
	}
	for _, typ := range types {
		c, ok := cases[typ]
		if !ok {
			t.Fatalf("no case for %s", typ)
		}
		reqID := "req-" + typ
		rs := f.do(f.alice, typ, `"_reqId":"`+reqID+`"`+prefixComma(c.fields))
		if len(rs) != len(c.want) {
			t.Errorf("%s: %d replies %v, want %v", typ, len(rs), rs, c.want)
			continue
		}
		for i, r := range rs {
			if r["type"] != c.want[i] {
				t.Errorf("%s: reply %d type %v, want %s (%v)", typ, i, r["type"], c.want[i], r)
			}
			if r["_reqId"] != reqID {
				t.Errorf("%s: _reqId %v, want %s", typ, r["_reqId"], reqID)
			}
			if r["id"] == reqID {
				t.Errorf("%s: the request id is in id", typ)
			}
			if r["type"] == "ack" && r["id"] != "" {
				t.Errorf("%s: ack id %v, want \"\" (inert)", typ, r["id"])
			}
			// The groups of issue 15 items 6 and 8 succeed for real.
			switch g := collab.Group(typ); {
			case (g == "vault" || g == "webhooks" || g == "api keys") && r["code"] != nil:
				t.Errorf("%s: rejected: %v", typ, r)
			case (typ == "vault_set" && r["action"] != "stored") || (typ == "vault_delete" && r["action"] != "deleted"):
				t.Errorf("%s: %v", typ, r)
			case typ == "apikey_create" && (r["secret"] == nil || r["id"] == nil):
				t.Errorf("%s: %v", typ, r)
			}
		}
	}
	for _, typ := range []string{"send", "hello", "set_state", "no_such_verb"} {
		if _, ok := f.h.Handle(f.ctx, f.alice, typ, []byte(`{"type":"`+typ+`"}`)); ok {
			t.Errorf("Handle claims %s", typ)
		}
	}
}

// TestNoReqIDNoEcho: a request without _reqId gets replies without one.
func TestNoReqIDNoEcho(t *testing.T) {
	f := newFixture(t, collab.Config{})
	for _, typ := range []string{"list_tasks", "forget", "vault_list", "mesh_info"} {
		for _, r := range f.do(f.alice, typ, `"memoryId":"x"`) {
			if _, ok := r["_reqId"]; ok {
				t.Errorf("%s: _reqId %v echoed without one sent", typ, r["_reqId"])
			}
		}
	}
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return "," + s
}
