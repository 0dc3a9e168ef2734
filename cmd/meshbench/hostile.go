package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// Hostile traffic (steady --hostile N): N hostile frames spread over the
// load, interleaved with the valid DMs, modelled on the broker's handshake
// tables (broker/handshake_test.go): hellos and session_hellos with wrong
// keys, bad signatures, skewed timestamps, unknown members; and bad JSON,
// unknown types, invalid sends and oversized frames, before hello and on
// an authenticated socket. Hostile identities live in a mesh of their own
// so no hostile hello can take a push meant for a load client.

// hostileCase builds one frame; pre-hello cases go on a fresh socket.
type hostileCase struct {
	name  string
	auth  bool // sent after a valid hello (the socket must survive it)
	frame func(h *hostile, now time.Time) []byte
}

type hostile struct {
	mesh           string
	alice, bob     *member
	stranger, sess client.Identity
	other          client.Identity

	sent, rejected, accepted, unanswered, odd atomic.Int64
	mu                                        sync.Mutex
	kinds                                     map[string]int // outcome → count; guarded by mu
}

func helloMap(mesh, memberID string, key client.Identity, now time.Time) map[string]any {
	return helloSession(mesh, memberID, key, now, "hostile-"+key.Pubkey[:8])
}

// helloSession is helloMap with a session id: each of the 8 concurrent
// hostile sockets has its own, reused one after the other, so a closed
// socket's grace lease is reattached rather than piling up against the
// mesh's MAX_CONNECTIONS_PER_MESH.
func helloSession(mesh, memberID string, key client.Identity, now time.Time, session string) map[string]any {
	ts := float64(now.UnixMilli())
	return map[string]any{
		"type": "hello", "meshId": mesh, "memberId": memberID, "pubkey": key.Pubkey,
		"sessionId": session, "pid": 7, "cwd": "/hostile", "timestamp": ts,
		"signature": wire.Sign(key.Secret, wire.HelloCanonical(mesh, memberID, key.Pubkey, ts)),
	}
}

// lastValidMs makes the valid hellos' timestamps strictly increasing: a
// hello signature is single-use (docs/protocol.md A.3-21), and two sockets
// of alice signing in the same millisecond would sign the same bytes.
var lastValidMs atomic.Int64

func validMillis(now time.Time) int64 {
	for {
		last := lastValidMs.Load()
		ms := max(now.UnixMilli(), last+1)
		if lastValidMs.CompareAndSwap(last, ms) {
			return ms
		}
	}
}

func resignMap(f map[string]any, key client.Identity) map[string]any {
	f["signature"] = wire.Sign(key.Secret, wire.HelloCanonical(f["meshId"].(string), f["memberId"].(string), f["pubkey"].(string), f["timestamp"].(float64)))
	return f
}

func sessionHelloMap(mesh, memberID string, parent, sess client.Identity, now time.Time, ttl time.Duration) map[string]any {
	ts := float64(now.UnixMilli())
	exp := float64(now.Add(ttl).UnixMilli())
	return map[string]any{
		"type": "session_hello", "meshId": mesh, "parentMemberId": memberID,
		"parentMemberPubkey": parent.Pubkey, "sessionPubkey": sess.Pubkey,
		"parentAttestation": map[string]any{
			"sessionPubkey": sess.Pubkey, "parentMemberPubkey": parent.Pubkey, "expiresAt": exp,
			"signature": wire.Sign(parent.Secret, wire.AttestationCanonical(parent.Pubkey, sess.Pubkey, exp)),
		},
		"sessionId": "hostile-" + sess.Pubkey[:8], "pid": 8, "cwd": "/hostile", "timestamp": ts,
		"signature": wire.Sign(sess.Secret, wire.SessionHelloCanonical(mesh, parent.Pubkey, sess.Pubkey, ts)),
	}
}

func js(v any) []byte { b, _ := json.Marshal(v); return b }

// oversized is a frame over the broker's 64 KiB MAX_MESSAGE_BYTES.
var oversized = []byte(`{"type":"send","targetSpec":"*","priority":"now","nonce":"","ciphertext":"` + strings.Repeat("A", 70000) + `"}`)

var hostileCases = []hostileCase{
	{"bad JSON", false, func(*hostile, time.Time) []byte { return []byte("{nope") }},
	{"unknown type", false, func(*hostile, time.Time) []byte { return []byte(`{"type":"teleport"}`) }},
	{"oversized frame", false, func(*hostile, time.Time) []byte { return oversized }},
	{"wrong-key signature", false, func(h *hostile, now time.Time) []byte {
		return js(resignMap(helloMap(h.mesh, h.alice.id, h.alice.key, now), h.other))
	}},
	{"timestamp 61 s old", false, func(h *hostile, now time.Time) []byte {
		return js(helloMap(h.mesh, h.alice.id, h.alice.key, now.Add(-61*time.Second)))
	}},
	{"timestamp 61 s in the future", false, func(h *hostile, now time.Time) []byte {
		return js(helloMap(h.mesh, h.alice.id, h.alice.key, now.Add(61*time.Second)))
	}},
	{"tampered meshId", false, func(h *hostile, now time.Time) []byte {
		f := helloMap(h.mesh, h.alice.id, h.alice.key, now)
		f["meshId"] = h.mesh + "x"
		return js(f)
	}},
	{"non-hex pubkey", false, func(h *hostile, now time.Time) []byte {
		f := helloMap(h.mesh, h.alice.id, h.alice.key, now)
		f["pubkey"] = "not-hex"
		return js(f)
	}},
	{"short signature", false, func(h *hostile, now time.Time) []byte {
		f := helloMap(h.mesh, h.alice.id, h.alice.key, now)
		f["signature"] = "abc123"
		return js(f)
	}},
	{"unknown member", false, func(h *hostile, now time.Time) []byte {
		return js(helloMap(h.mesh, h.alice.id, h.stranger, now))
	}},
	{"memberId of another member", false, func(h *hostile, now time.Time) []byte {
		return js(resignMap(helloMap(h.mesh, h.bob.id, h.alice.key, now), h.alice.key))
	}},
	{"session: attestation expired", false, func(h *hostile, now time.Time) []byte {
		return js(sessionHelloMap(h.mesh, h.alice.id, h.alice.key, h.sess, now, -time.Second))
	}},
	{"session: attestation TTL 24 h + 60 s", false, func(h *hostile, now time.Time) []byte {
		return js(sessionHelloMap(h.mesh, h.alice.id, h.alice.key, h.sess, now, 24*time.Hour+time.Minute))
	}},
	{"session: attestation signed by another key", false, func(h *hostile, now time.Time) []byte {
		f := sessionHelloMap(h.mesh, h.alice.id, h.alice.key, h.sess, now, time.Hour)
		att := f["parentAttestation"].(map[string]any)
		att["signature"] = wire.Sign(h.other.Secret, wire.AttestationCanonical(h.alice.key.Pubkey, h.sess.Pubkey, att["expiresAt"].(float64)))
		return js(f)
	}},
	{"session: hello signed by the parent key", false, func(h *hostile, now time.Time) []byte {
		f := sessionHelloMap(h.mesh, h.alice.id, h.alice.key, h.sess, now, time.Hour)
		f["signature"] = wire.Sign(h.alice.key.Secret, wire.SessionHelloCanonical(h.mesh, h.alice.key.Pubkey, h.sess.Pubkey, f["timestamp"].(float64)))
		return js(f)
	}},
	{"session: timestamp skew", false, func(h *hostile, now time.Time) []byte {
		return js(sessionHelloMap(h.mesh, h.alice.id, h.alice.key, h.sess, now.Add(-2*time.Minute), time.Hour+2*time.Minute))
	}},
	{"authenticated: bad JSON", true, func(*hostile, time.Time) []byte { return []byte("{nope") }},
	{"authenticated: no type", true, func(*hostile, time.Time) []byte { return []byte(`{"x":1}`) }},
	{"authenticated: unknown type", true, func(*hostile, time.Time) []byte { return []byte(`{"type":"teleport"}`) }},
	{"authenticated: send with bad priority", true, func(*hostile, time.Time) []byte {
		return []byte(`{"type":"send","targetSpec":"*","priority":"urgent","nonce":"","ciphertext":""}`)
	}},
	{"authenticated: send without ciphertext", true, func(*hostile, time.Time) []byte {
		return []byte(`{"type":"send","targetSpec":"*","nonce":""}`)
	}},
	{"authenticated: send to a malformed target", true, func(*hostile, time.Time) []byte {
		return []byte(`{"type":"send","targetSpec":"zz","priority":"now","nonce":"!","ciphertext":"!"}`)
	}},
}

// runHostile sends n hostile frames spread evenly over d, 8 at a time,
// each on its own socket (an authenticated socket gets a valid hello of
// alice first, then the frame, then must still answer a list_peers).
func runHostile(ctx context.Context, b *bench, n int, d time.Duration) (*hostile, error) {
	ms, err := enroll(ctx, b.cfg, b.runID+"h", 2, b.logf)
	if err != nil {
		return nil, fmt.Errorf("hostile: %w", err)
	}
	h := &hostile{mesh: ms[0].mesh, alice: ms[0], bob: ms[1], stranger: client.GenerateIdentity(),
		sess: client.GenerateIdentity(), other: client.GenerateIdentity(), kinds: map[string]int{}}
	every := d / time.Duration(n)
	start := time.Now()
	slots := make(chan int, 8)
	for i := range cap(slots) {
		slots <- i
	}
	var wg sync.WaitGroup
	for k := 0; k < n && ctx.Err() == nil; k++ {
		if w := time.Until(start.Add(time.Duration(k) * every)); w > 0 {
			time.Sleep(w)
		}
		slot := <-slots
		wg.Add(1)
		go func() {
			defer func() { slots <- slot; wg.Done() }()
			c := hostileCases[k%len(hostileCases)]
			h.one(ctx, b.cfg.URLs[k%len(b.cfg.URLs)], c, fmt.Sprintf("hostile-%s-%d", b.runID, slot))
		}()
	}
	wg.Wait()
	return h, nil
}

func (h *hostile) outcome(c hostileCase, kind string) {
	h.mu.Lock()
	h.kinds[kind]++
	h.mu.Unlock()
	switch kind {
	case "rejected":
		h.rejected.Add(1)
	case "accepted":
		h.accepted.Add(1)
	case "unanswered":
		h.unanswered.Add(1)
	default:
		h.odd.Add(1)
	}
}

// one sends case c on a new socket and classifies the broker's answer:
// rejected (an error frame or a close), accepted (a hello_ack to a bad
// hello, or an authenticated socket that stopped answering), or
// unanswered within 10 s.
func (h *hostile) one(ctx context.Context, url string, c hostileCase, session string) {
	ws, _, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		h.outcome(c, "dial failed: "+errKey(err))
		return
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if c.auth {
		if err := ws.WriteMessage(websocket.TextMessage, js(helloSession(h.mesh, h.alice.id, h.alice.key, time.UnixMilli(validMillis(time.Now())), session))); err != nil {
			h.outcome(c, "hello write failed")
			return
		}
		if typ, _ := readType(ws, "hello_ack", "error"); typ != "hello_ack" {
			h.outcome(c, "valid hello not acked: "+typ)
			return
		}
	}
	h.sent.Add(1)
	if err := ws.WriteMessage(websocket.TextMessage, c.frame(h, time.Now())); err != nil {
		h.outcome(c, "rejected") // the broker closed first
		return
	}
	typ, _ := readType(ws, "hello_ack", "error", "ack")
	switch {
	case typ == "hello_ack":
		h.outcome(c, "accepted")
		return
	case typ == "timeout":
		h.outcome(c, "unanswered")
		return
	case !c.auth || typ == "closed":
		h.outcome(c, "rejected")
		return
	}
	// An authenticated socket must survive a bad frame.
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"list_peers","_reqId":"h"}`)); err != nil {
		h.outcome(c, "socket dead after a bad frame")
		return
	}
	if typ, _ := readType(ws, "peers_list", "error"); typ != "peers_list" {
		h.outcome(c, "socket dead after a bad frame: "+typ)
		return
	}
	h.outcome(c, "rejected")
}

// readType reads frames until one of the wanted types, a close ("closed")
// or the deadline ("timeout"); others (pushes) are skipped.
func readType(ws *websocket.Conn, want ...string) (string, []byte) {
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				return "timeout", nil
			}
			return "closed", nil
		}
		var f struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(b, &f)
		for _, w := range want {
			if f.Type == w {
				return f.Type, b
			}
		}
	}
}

// report books the hostile figures; a bad hello accepted or an
// authenticated socket killed by a bad frame is a failure.
func (h *hostile) report(b *bench) {
	h.mu.Lock()
	kinds := maps.Clone(h.kinds)
	h.mu.Unlock()
	b.figure("hostile frames", "%d sent: %d rejected, %d accepted, %d unanswered within 10 s (%s)",
		h.sent.Load(), h.rejected.Load(), h.accepted.Load(), h.unanswered.Load(), topKinds(kinds, 4))
	if n := h.accepted.Load(); n > 0 {
		b.fail("%d hostile hellos were accepted (hello_ack)", n)
	}
	if n := h.odd.Load(); n > 0 {
		b.fail("%d hostile attempts had another outcome: %s", n, topKinds(kinds, 4))
	}
	b.mu.Lock()
	b.hostile = &HostileStats{Sent: h.sent.Load(), Rejected: h.rejected.Load(), Accepted: h.accepted.Load(),
		Unanswered: h.unanswered.Load(), Other: h.odd.Load(), Outcomes: kinds}
	b.mu.Unlock()
}

// HostileStats is the hostile phase in the JSON report.
type HostileStats struct {
	Sent       int64          `json:"sent"`
	Rejected   int64          `json:"rejected"`
	Accepted   int64          `json:"accepted"`
	Unanswered int64          `json:"unanswered"`
	Other      int64          `json:"other"`
	Outcomes   map[string]int `json:"outcomes"`
}
