package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// Helpers of the CLI/enrollment route tests (cli_*_test.go).

// cliResp is one HTTP answer.
type cliResp struct {
	status int
	body   map[string]any
	header http.Header
	raw    string
}

func (r cliResp) errStr() string { s, _ := r.body["error"].(string); return s }

// cliDo sends method url with an optional bearer token. body may be nil
// (no body), a string or []byte (sent as is), an io.Reader (sent chunked,
// no Content-Length) or anything else (JSON-encoded).
func cliDo(t testing.TB, method, url, token string, body any, hdr ...string) cliResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := cliResp{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// expect fails unless r has status and, when errMsg is non-empty, that error.
func (r cliResp) expect(t testing.TB, status int, errMsg string) cliResp {
	t.Helper()
	if r.status != status || (errMsg != "" && r.errStr() != errMsg) {
		t.Fatalf("got %d %s, want %d %q", r.status, r.raw, status, errMsg)
	}
	return r
}

// cliToken mints a bearer token for user as `meshd token create` does.
func (e *env) cliToken(user string) string {
	e.t.Helper()
	tok, err := e.st.CreateCLIToken(context.Background(), user)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) cliURL(path string) string { return e.replicas[0].hs.URL + path }

// cliExec runs a statement against the test database (fixture surgery
// such as expiring an invite).
func (e *env) cliExec(sql string, args ...any) {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// cliInt runs a query returning one integer.
func (e *env) cliInt(sql string, args ...any) int {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// cliMesh is a mesh created through POST /cli/mesh/create.
type cliMesh struct {
	id, slug, memberID string
	key                client.Identity // the owner's member key
}

func (e *env) createMeshHTTP(token, name string) cliMesh {
	e.t.Helper()
	key := client.GenerateIdentity()
	r := cliDo(e.t, "POST", e.cliURL("/cli/mesh/create"), token, map[string]any{"name": name, "pubkey": key.Pubkey}).expect(e.t, 200, "")
	return cliMesh{id: r.body["id"].(string), slug: r.body["slug"].(string), memberID: r.body["member_id"].(string), key: key}
}

// cliInvite is a POST /cli/mesh/:slug/invite answer.
type cliInvite struct {
	token, code, url string
	payload          *wire.InvitePayload
}

func (e *env) inviteHTTP(token, slug string, body map[string]any) cliInvite {
	e.t.Helper()
	var b any
	if body != nil {
		b = body
	}
	r := cliDo(e.t, "POST", e.cliURL("/cli/mesh/"+slug+"/invite"), token, b).expect(e.t, 200, "")
	inv := cliInvite{token: r.body["token"].(string), code: r.body["code"].(string), url: r.body["url"].(string)}
	p, err := wire.DecodeInviteToken(inv.token)
	if err != nil {
		e.t.Fatal(err)
	}
	inv.payload = p
	return inv
}

// cliJoinBody is what the CLI posts to /join for a token and payload.
func cliJoinBody(token string, p *wire.InvitePayload, pubkey, name string) map[string]any {
	return map[string]any{"invite_token": token, "invite_payload": p, "peer_pubkey": pubkey, "display_name": name}
}

// cliLogBuffer is a log sink written by the broker and read by the test.
type cliLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *cliLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *cliLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cliIdentity is a member enrolled over HTTP, ready for e.dial.
func cliIdentity(meshID, memberID, name string, key client.Identity) identity {
	return identity{mesh: meshd.Mesh{ID: meshID}, member: meshd.Member{ID: memberID, MeshID: meshID, DisplayName: name}, key: key}
}
