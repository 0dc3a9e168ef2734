package client

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// fakeBroker emulates just enough of a broker for client unit tests: it
// verifies hello/session_hello signatures with the wire package, answers
// hello_ack, acks sends and routes them as pushes between its connections,
// and answers list_peers and message_status. The end-to-end test against
// meshd lives elsewhere.
type fakeBroker struct {
	t   *testing.T
	srv *httptest.Server

	// Hooks, set before the first dial. n counts handshakes from 1.
	reject     func(n int) wire.Reason                       // non-OK rejects hello n
	afterHello func(fc *fakeConn, n int)                     // runs after hello_ack
	onFrame    func(fc *fakeConn, typ string, b []byte) bool // true = handled
	noAck      bool                                          // never answer hellos
	beforeAck  func(fc *fakeConn)                            // runs just before hello_ack

	mu     sync.Mutex
	hellos [][]byte            // raw handshake frames, in order
	conns  map[*fakeConn]bool  // authenticated, live
	acks   []wire.ClientAck    // client_acks received
	closes []int               // close codes received from clients
	frames map[string][][]byte // other frames by type
}

type fakeConn struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	routing string // session pubkey, else member pubkey
	member  string
	name    string
}

func (fc *fakeConn) send(v any) {
	b, _ := json.Marshal(v)
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_ = fc.ws.WriteMessage(websocket.TextMessage, b)
}

func (fc *fakeConn) close(code int, reason string) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_ = fc.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

// drop ends the TCP connection without a close frame (the client sees 1006).
func (fc *fakeConn) drop() { _ = fc.ws.UnderlyingConn().Close() }

func newFake(t *testing.T) *fakeBroker {
	f := &fakeBroker{t: t, conns: map[*fakeConn]bool{}, frames: map[string][][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeBroker) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws" }

func (f *fakeBroker) helloCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.hellos)
}

func (f *fakeBroker) hello(i int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hellos[i]
}

func (f *fakeBroker) clientAcks() []wire.ClientAck {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.ClientAck(nil), f.acks...)
}

func (f *fakeBroker) closeCodes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.closes...)
}

func (f *fakeBroker) serve(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	_, b, err := ws.ReadMessage()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.hellos = append(f.hellos, b)
	n := len(f.hellos)
	f.mu.Unlock()
	fc := &fakeConn{ws: ws}
	reason := f.verify(fc, b)
	if reason == wire.OK && f.reject != nil {
		reason = f.reject(n)
	}
	if reason != wire.OK {
		fc.send(reason.ErrorFrame("test mesh"))
		fc.close(reason.CloseCode(), reason.CloseText())
		_, _, _ = ws.ReadMessage() // the client's close echo
		return
	}
	if f.noAck {
		_, _, _ = ws.ReadMessage()
		return
	}
	if f.beforeAck != nil {
		f.beforeAck(fc)
	}
	// Registered before hello_ack so that a client that has its ack is
	// routable and listed.
	f.mu.Lock()
	f.conns[fc] = true
	f.mu.Unlock()
	fc.send(wire.HelloAck{Type: wire.TypeHelloAck, PresenceID: meshd.NewID(), MemberDisplayName: fc.name})
	defer func() {
		f.mu.Lock()
		delete(f.conns, fc)
		f.mu.Unlock()
	}()
	if f.afterHello != nil {
		f.afterHello(fc, n)
	}
	f.readLoop(fc)
}

// verify checks a handshake frame as the broker does (B.2, B.3), with the
// wire package's canonical strings.
func (f *fakeBroker) verify(fc *fakeConn, b []byte) wire.Reason {
	var env wire.Envelope
	_ = json.Unmarshal(b, &env)
	now := float64(time.Now().UnixMilli())
	switch env.Type {
	case wire.TypeHello:
		var h wire.Hello
		if json.Unmarshal(b, &h) != nil {
			return wire.ReasonMalformed
		}
		ts, ok := wire.ParseJSTimestamp(h.Timestamp)
		if !ok || math.Abs(now-ts) > 60_000 {
			return wire.ReasonTimestampSkew
		}
		if !wire.VerifyHex(h.Pubkey, h.Signature, wire.HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, ts)) {
			return wire.ReasonBadSignature
		}
		fc.routing, fc.member, fc.name = h.Pubkey, h.Pubkey, h.DisplayName
		return wire.OK
	case wire.TypeSessionHello:
		return f.verifySession(fc, b, now)
	}
	return wire.ReasonMalformed
}

func (f *fakeBroker) verifySession(fc *fakeConn, b []byte, now float64) wire.Reason {
	var h wire.SessionHello
	var a wire.Attestation
	if json.Unmarshal(b, &h) != nil || json.Unmarshal(h.ParentAttestation, &a) != nil {
		return wire.ReasonAttestationMismatch
	}
	if a.SessionPubkey != h.SessionPubkey || a.ParentMemberPubkey != h.ParentMemberPubkey {
		return wire.ReasonAttestationMismatch
	}
	exp, ok := wire.ParseJSTimestamp(a.ExpiresAt)
	switch {
	case !ok:
		return wire.ReasonAttestationMalformed
	case exp <= now:
		return wire.ReasonAttestationExpired
	case exp > now+86_400_000:
		return wire.ReasonAttestationTTLTooLong
	}
	if !wire.VerifyHex(a.ParentMemberPubkey, a.Signature, wire.AttestationCanonical(a.ParentMemberPubkey, a.SessionPubkey, exp)) {
		return wire.ReasonAttestationBadSignature
	}
	ts, ok := wire.ParseJSTimestamp(h.Timestamp)
	if !ok || math.Abs(now-ts) > 60_000 {
		return wire.ReasonSessionTimestampSkew
	}
	if !wire.VerifyHex(h.SessionPubkey, h.Signature, wire.SessionHelloCanonical(h.MeshID, h.ParentMemberPubkey, h.SessionPubkey, ts)) {
		return wire.ReasonSessionBadSignature
	}
	fc.routing, fc.member, fc.name = h.SessionPubkey, h.ParentMemberPubkey, h.DisplayName
	return wire.OK
}

func (f *fakeBroker) readLoop(fc *fakeConn) {
	for {
		_, b, err := fc.ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				f.mu.Lock()
				f.closes = append(f.closes, ce.Code)
				f.mu.Unlock()
			}
			return
		}
		var env wire.Envelope
		_ = json.Unmarshal(b, &env)
		f.mu.Lock()
		f.frames[env.Type] = append(f.frames[env.Type], b)
		f.mu.Unlock()
		if f.onFrame != nil && f.onFrame(fc, env.Type, b) {
			continue
		}
		f.handle(fc, env, b)
	}
}

func (f *fakeBroker) handle(fc *fakeConn, env wire.Envelope, b []byte) {
	switch env.Type {
	case wire.TypeSend:
		f.handleSend(fc, b)
	case wire.TypeClientAck:
		var a wire.ClientAck
		_ = json.Unmarshal(b, &a)
		f.mu.Lock()
		f.acks = append(f.acks, a)
		f.mu.Unlock()
	case wire.TypeListPeers:
		var peers []wire.Peer
		f.mu.Lock()
		for c := range f.conns {
			peers = append(peers, wire.Peer{Pubkey: c.routing, MemberPubkey: c.member, DisplayName: c.name})
		}
		f.mu.Unlock()
		fc.send(wire.PeersList{Type: wire.TypePeersList, Peers: peers, ReqID: env.ReqID})
	case wire.TypeMessageStatus:
		var m wire.MessageStatus
		_ = json.Unmarshal(b, &m)
		fc.send(wire.MessageStatusResult{Type: "message_status_result", MessageID: m.MessageID, TargetSpec: "*", Delivered: true, ReqID: env.ReqID})
	default:
		fc.send(wire.Error{Type: wire.TypeError, Code: "unknown_message_type", Message: "unknown type " + env.Type, ReqID: env.ReqID})
	}
}

// handleSend acks a send and pushes it to matching connections: by routing
// or member pubkey for direct targets, everyone else for "*".
func (f *fakeBroker) handleSend(fc *fakeConn, b []byte) {
	var s wire.Send
	_ = json.Unmarshal(b, &s)
	id := meshd.NewID()
	push := wire.Push{
		Type: wire.TypePush, MessageID: id, MeshID: "mesh-x", SenderPubkey: fc.routing,
		SenderMemberPubkey: fc.member, Priority: s.Priority, Nonce: *s.Nonce, Ciphertext: *s.Ciphertext,
		CreatedAt: time.Now().UTC().Format(time.RFC3339Nano),
	}
	var to []*fakeConn
	f.mu.Lock()
	for c := range f.conns {
		if c != fc && (s.TargetSpec == "*" || s.TargetSpec == c.routing || s.TargetSpec == c.member) {
			to = append(to, c)
		}
	}
	f.mu.Unlock()
	if len(to) == 0 {
		fc.send(wire.Ack{Type: wire.TypeAck, ID: s.ID, Error: "no connected peer for target"})
		return
	}
	fc.send(wire.Ack{Type: wire.TypeAck, ID: s.ID, MessageID: id, Queued: true})
	for _, c := range to {
		c.send(push)
	}
}
