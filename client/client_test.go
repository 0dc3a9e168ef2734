package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

func dial(t *testing.T, f *fakeBroker, opt func(*Config)) *Client {
	t.Helper()
	c, err := Dial(context.Background(), testConfig(t, f, opt))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testConfig(t *testing.T, f *fakeBroker, opt func(*Config)) Config {
	t.Helper()
	cfg := Config{
		URL: f.url(), MeshID: "mesh-x", MemberID: "member-" + t.Name(), Member: GenerateIdentity(),
		DisplayName: "tester", PeerType: "ai", Channel: "test",
	}
	if opt != nil {
		opt(&cfg)
	}
	return cfg
}

func withSession(cfg *Config) {
	s := GenerateIdentity()
	cfg.Session = &s
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting on channel")
	}
	panic("unreachable")
}

func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not stop")
	}
}

func TestHelloSignatureVerifies(t *testing.T) {
	f := newFake(t)
	c := dial(t, f, func(cfg *Config) { cfg.AckPushes = true; cfg.Groups = []meshd.Group{{Name: "ops"}} })
	if c.HelloAck() == nil || c.HelloAck().PresenceID == "" {
		t.Fatalf("no hello_ack: %+v", c.HelloAck())
	}
	var h wire.Hello
	if err := json.Unmarshal(f.hello(0), &h); err != nil {
		t.Fatal(err)
	}
	ts, ok := wire.ParseJSTimestamp(h.Timestamp)
	if !ok || time.Since(time.UnixMilli(int64(ts))) > 5*time.Second {
		t.Fatalf("timestamp %s is not now in ms", h.Timestamp)
	}
	if !wire.VerifyHex(c.cfg.Member.Pubkey, h.Signature, wire.HelloCanonical("mesh-x", c.cfg.MemberID, c.cfg.Member.Pubkey, ts)) {
		t.Fatal("hello signature does not verify")
	}
	if h.Type != "hello" || h.Pubkey != c.Pubkey() || h.SessionPubkey != "" || h.PID == nil || h.CWD == nil ||
		h.SessionID == "" || !slices.Equal(h.Capabilities, []string{"client_ack"}) || h.ProtocolVersion != 1 ||
		len(h.Groups) != 1 || h.PeerType != "ai" || h.Channel != "test" || h.DisplayName != "tester" {
		t.Fatalf("hello fields: %s", f.hello(0))
	}
}

func TestSessionHelloAttestation(t *testing.T) {
	f := newFake(t)
	c := dial(t, f, withSession)
	var h wire.SessionHello
	var a wire.Attestation
	if err := json.Unmarshal(f.hello(0), &h); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(h.ParentAttestation, &a); err != nil {
		t.Fatal(err)
	}
	ts, _ := wire.ParseJSTimestamp(h.Timestamp)
	exp, _ := wire.ParseJSTimestamp(a.ExpiresAt)
	if time.Duration(exp-ts)*time.Millisecond != 12*time.Hour {
		t.Fatalf("attestation TTL %v, want 12h", time.Duration(exp-ts)*time.Millisecond)
	}
	member, session := c.cfg.Member.Pubkey, c.cfg.Session.Pubkey
	if !wire.VerifyHex(member, a.Signature, wire.AttestationCanonical(member, session, exp)) {
		t.Fatal("attestation not signed by the member")
	}
	if !wire.VerifyHex(session, h.Signature, wire.SessionHelloCanonical("mesh-x", member, session, ts)) {
		t.Fatal("session_hello not signed by the session")
	}
	if h.Type != "session_hello" || h.ParentMemberID != c.cfg.MemberID || h.ParentMemberPubkey != member ||
		h.SessionPubkey != session || c.Pubkey() != session {
		t.Fatalf("session_hello fields: %s", f.hello(0))
	}
}

// TestRejected: a refused handshake surfaces as *RejectedError with the
// error frame and the close frame; a valid hello afterwards still works.
func TestRejected(t *testing.T) {
	tests := []struct {
		name      string
		reason    wire.Reason
		opt       func(*Config)
		code      string
		closeCode int
		closeText string
		terminal  bool
	}{
		{name: "bad_signature", reason: wire.ReasonBadSignature,
			code: "bad_signature", closeCode: 1008, closeText: "bad_signature", terminal: true},
		{name: "timestamp_skew", opt: func(c *Config) { c.Now = func() time.Time { return time.Now().Add(-2 * time.Minute) } },
			code: "timestamp_skew", closeCode: 1008, closeText: "timestamp_skew"},
		{name: "session_timestamp_skew", opt: func(c *Config) {
			withSession(c)
			c.Now = func() time.Time { return time.Now().Add(2 * time.Minute) }
		}, code: "timestamp_skew", closeCode: 1008, closeText: "timestamp_skew"},
		{name: "revoked", reason: wire.ReasonRevoked,
			code: "revoked", closeCode: 4002, closeText: "banned", terminal: true},
		{name: "capacity", reason: wire.ReasonCapacity,
			code: "capacity", closeCode: 1008, closeText: "capacity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.reject = func(n int) wire.Reason {
				if n == 1 {
					return tt.reason
				}
				return wire.OK
			}
			_, err := Dial(context.Background(), testConfig(t, f, tt.opt))
			var rej *RejectedError
			if !errors.As(err, &rej) {
				t.Fatalf("err = %v, want *RejectedError", err)
			}
			if rej.Code != tt.code || rej.Message == "" || rej.CloseCode != tt.closeCode || rej.CloseReason != tt.closeText || rej.Terminal() != tt.terminal {
				t.Fatalf("got %+v terminal=%v", rej, rej.Terminal())
			}
			c := dial(t, f, nil)
			if _, err := c.ListPeers(context.Background()); err != nil {
				t.Fatalf("valid hello after rejection: %v", err)
			}
		})
	}
}

// TestPushBeforeHelloAck: upstream drains queued pushes just before
// hello_ack (B.2 step 9); they are delivered, not lost.
func TestPushBeforeHelloAck(t *testing.T) {
	f := newFake(t)
	f.beforeAck = func(fc *fakeConn) {
		fc.send(wire.Push{Type: wire.TypePush, MessageID: "early", SenderPubkey: "webhook:x", Ciphertext: "ZWFybHk="})
	}
	c := dial(t, f, func(cfg *Config) { cfg.AckPushes = true })
	if m := recv(t, c.Pushes()); m.Push.MessageID != "early" || string(m.Plaintext) != "early" {
		t.Fatalf("got %+v", m)
	}
	eventually(t, "client_ack", func() bool { return len(f.clientAcks()) == 1 })
}

func TestHelloTimeout(t *testing.T) {
	f := newFake(t)
	f.noAck = true
	start := time.Now()
	_, err := Dial(context.Background(), testConfig(t, f, func(c *Config) { c.HelloTimeout = 100 * time.Millisecond }))
	if !errors.Is(err, ErrHelloTimeout) {
		t.Fatalf("err = %v, want ErrHelloTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestDialValidatesConfig(t *testing.T) {
	f := newFake(t)
	bad := GenerateIdentity()
	bad.Pubkey = GenerateIdentity().Pubkey
	tests := map[string]func(*Config){
		"http_url":        func(c *Config) { c.URL = "http://x/ws" },
		"no_mesh":         func(c *Config) { c.MeshID = "" },
		"no_member_id":    func(c *Config) { c.MemberID = "" },
		"mismatched_key":  func(c *Config) { c.Member = bad },
		"bad_session":     func(c *Config) { c.Session = &bad },
		"negative_period": func(c *Config) { c.PingInterval = -1 },
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := Dial(context.Background(), testConfig(t, f, opt)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if n := f.helloCount(); n != 0 {
		t.Fatalf("%d hellos reached the broker", n)
	}
}

type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }

func (l *eventLog) kinds() []EventKind {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []EventKind
	for _, e := range l.ev {
		k = append(k, e.Kind)
	}
	return k
}

// TestReconnectAfterDrop: the broker drops the socket without a close
// frame; the client reconnects after 1 s, re-mints its attestation and
// works again.
func TestReconnectAfterDrop(t *testing.T) {
	f := newFake(t)
	f.afterHello = func(fc *fakeConn, n int) {
		if n == 1 {
			fc.drop()
		}
	}
	var log eventLog
	c := dial(t, f, func(cfg *Config) { withSession(cfg); cfg.Reconnect = true; cfg.OnEvent = log.add })
	recv(t, c.Reconnected())
	if _, err := c.ListPeers(context.Background()); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
	if got := c.Stats().Reconnects; got != 1 {
		t.Fatalf("reconnects = %d", got)
	}
	want := []EventKind{EventConnected, EventDisconnected, EventReconnecting, EventConnected}
	if got := log.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if d := log.ev[2].Delay; d != time.Second {
		t.Fatalf("first backoff %v, want 1s", d)
	}
	var h1, h2 wire.SessionHello
	_ = json.Unmarshal(f.hello(0), &h1)
	_ = json.Unmarshal(f.hello(1), &h2)
	if string(h1.ParentAttestation) == string(h2.ParentAttestation) || string(h1.Timestamp) >= string(h2.Timestamp) {
		t.Fatalf("attestation not re-minted:\n%s\n%s", h1.ParentAttestation, h2.ParentAttestation)
	}
}

func TestBackoffSchedule(t *testing.T) {
	var got []time.Duration
	for i := range 8 {
		got = append(got, backoffDelay(i))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Fatalf("backoff %v, want %v", got, want)
	}
}

// TestTerminalClose: closes that forbid reconnecting stop the client even
// with Reconnect; others stop it only without Reconnect.
func TestTerminalClose(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		text      string
		reconnect bool
	}{
		{"banned_4002", 4002, "banned", true},
		{"kicked_4001", 4001, "kicked", true},
		{"session_replaced", 1000, "session_replaced", true},
		{"disconnected_without_reconnect", 1000, "disconnected", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.afterHello = func(fc *fakeConn, n int) { fc.close(tt.code, tt.text) }
			c := dial(t, f, func(cfg *Config) { cfg.Reconnect = tt.reconnect })
			waitDone(t, c)
			var ce *CloseError
			if !errors.As(c.Err(), &ce) || ce.Code != tt.code || ce.Reason != tt.text {
				t.Fatalf("Err() = %v", c.Err())
			}
			if _, ok := <-c.Pushes(); ok {
				t.Fatal("Pushes() not closed")
			}
			if _, err := c.ListPeers(context.Background()); !errors.Is(err, ErrClosed) {
				t.Fatalf("request after stop: %v", err)
			}
			time.Sleep(1200 * time.Millisecond) // past the first backoff
			if n := f.helloCount(); n != 1 {
				t.Fatalf("%d hellos, want no reconnect", n)
			}
		})
	}
}

// TestNonTerminalCloseReconnects: a soft disconnect (1000 disconnected)
// reconnects when Reconnect is set.
func TestNonTerminalCloseReconnects(t *testing.T) {
	f := newFake(t)
	f.afterHello = func(fc *fakeConn, n int) {
		if n == 1 {
			fc.close(1000, "disconnected")
		}
	}
	c := dial(t, f, func(cfg *Config) { cfg.Reconnect = true })
	recv(t, c.Reconnected())
	if c.Err() != nil {
		t.Fatal(c.Err())
	}
}

// TestReconnectRejectedTerminal: a reconnect rejected with 4002 (member
// revoked meanwhile) stops the client with the RejectedError.
func TestReconnectRejectedTerminal(t *testing.T) {
	f := newFake(t)
	f.afterHello = func(fc *fakeConn, n int) { fc.drop() }
	f.reject = func(n int) wire.Reason {
		if n > 1 {
			return wire.ReasonRevoked
		}
		return wire.OK
	}
	c := dial(t, f, func(cfg *Config) { cfg.Reconnect = true })
	waitDone(t, c)
	var rej *RejectedError
	if !errors.As(c.Err(), &rej) || rej.CloseCode != 4002 || rej.Code != "revoked" {
		t.Fatalf("Err() = %v", c.Err())
	}
}

func TestDMRoundTrip(t *testing.T) {
	f := newFake(t)
	alice := dial(t, f, func(cfg *Config) { cfg.AckPushes = true })
	bob := dial(t, f, func(cfg *Config) { withSession(cfg); cfg.AckPushes = true })
	ctx := context.Background()

	// alice → bob's session key: sealed with alice's member key, opened
	// with bob's session secret.
	ack, err := alice.Send(ctx, bob.Pubkey(), meshd.PriorityNow, []byte("hi bob"))
	if err != nil || !ack.Queued || ack.MessageID == "" {
		t.Fatalf("send: %+v %v", ack, err)
	}
	m := recv(t, bob.Pushes())
	if string(m.Plaintext) != "hi bob" || !m.Encrypted || m.DecryptErr != nil || m.Push.SenderPubkey != alice.Pubkey() {
		t.Fatalf("bob got %+v", m)
	}
	if m.Push.Ciphertext == base64.StdEncoding.EncodeToString([]byte("hi bob")) {
		t.Fatal("DM went out in the clear")
	}
	eventually(t, "client_ack", func() bool {
		acks := f.clientAcks()
		return len(acks) == 1 && acks[0].BrokerMessageID == m.Push.MessageID && acks[0].ClientMessageID == m.Push.MessageID
	})

	// bob → alice: sealed with bob's session secret (the push's sender).
	if _, err := bob.Send(ctx, alice.Pubkey(), meshd.PriorityNext, []byte("hi alice")); err != nil {
		t.Fatal(err)
	}
	m = recv(t, alice.Pushes())
	if string(m.Plaintext) != "hi alice" || !m.Encrypted || m.Push.SenderPubkey != bob.Pubkey() {
		t.Fatalf("alice got %+v", m)
	}

	// alice → bob's member key: bob opens with the member secret fallback.
	if _, err := alice.Send(ctx, bob.cfg.Member.Pubkey, meshd.PriorityNow, []byte("to member")); err != nil {
		t.Fatal(err)
	}
	if m = recv(t, bob.Pushes()); string(m.Plaintext) != "to member" || !m.Encrypted {
		t.Fatalf("member-key DM: %+v", m)
	}

	// Broadcast: base64 body, not encrypted.
	if _, err := alice.Send(ctx, "*", meshd.PriorityLow, []byte("hi all")); err != nil {
		t.Fatal(err)
	}
	if m = recv(t, bob.Pushes()); string(m.Plaintext) != "hi all" || m.Encrypted || m.DecryptErr != nil {
		t.Fatalf("broadcast: %+v", m)
	}
}

// TestPushDecoding covers the B.12 decode rules on pushes the broker
// originates or that arrive damaged.
func TestPushDecoding(t *testing.T) {
	f := newFake(t)
	sender := GenerateIdentity()
	var rc *fakeConn
	var mu sync.Mutex
	f.afterHello = func(fc *fakeConn, n int) { mu.Lock(); rc = fc; mu.Unlock() }
	c := dial(t, f, withSession)
	nonce, ct, _ := SealDM([]byte("secret"), c.Pubkey(), sender)
	raw, _ := base64.StdEncoding.DecodeString(ct)
	raw[0] ^= 0xff
	tampered := base64.StdEncoding.EncodeToString(raw)
	other, _, _ := SealDM([]byte("x"), GenerateIdentity().Pubkey, sender)
	_, otherCT, _ := SealDM([]byte("not for us"), GenerateIdentity().Pubkey, sender)
	tests := []struct {
		name      string
		push      wire.Push
		plaintext string
		encrypted bool
		err       error
	}{
		{"tampered_dm", wire.Push{SenderPubkey: sender.Pubkey, Nonce: nonce, Ciphertext: tampered}, "", false, ErrDecrypt},
		{"dm_for_someone_else", wire.Push{SenderPubkey: sender.Pubkey, Nonce: other, Ciphertext: otherCT}, "", false, ErrDecrypt},
		{"system", wire.Push{Subtype: "system", SenderPubkey: "system", Event: "peer_joined", EventData: json.RawMessage(`{}`)}, "", false, nil},
		{"scheduled_empty_nonce", wire.Push{SenderPubkey: sender.Pubkey, Ciphertext: "cmVtaW5k", Subtype: "reminder"}, "remind", false, nil},
		{"webhook", wire.Push{Subtype: "webhook", SenderPubkey: "webhook:ci", Ciphertext: ""}, "", false, nil},
		{"not_base64", wire.Push{SenderPubkey: "webhook:x", Ciphertext: "%%"}, "", false, ErrDecrypt},
		{"dm", wire.Push{SenderPubkey: sender.Pubkey, Nonce: nonce, Ciphertext: ct}, "secret", true, nil},
		{"topic_v1", wire.Push{SenderPubkey: sender.Pubkey, Nonce: nonce, Ciphertext: "ZGVwbG95", Topic: "ops", BodyVersion: 1}, "deploy", false, nil},
		{"topic_v2", wire.Push{SenderPubkey: sender.Pubkey, Nonce: nonce, Ciphertext: ct, Topic: "ops", BodyVersion: 2}, "", false, ErrTopicKey},
	}
	eventually(t, "fake conn", func() bool { mu.Lock(); defer mu.Unlock(); return rc != nil })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.push.Type, tt.push.MessageID = wire.TypePush, meshd.NewID()
			rc.send(tt.push)
			m := recv(t, c.Pushes())
			if string(m.Plaintext) != tt.plaintext || m.Encrypted != tt.encrypted || !errors.Is(m.DecryptErr, tt.err) {
				t.Fatalf("got plaintext %q encrypted %v err %v", m.Plaintext, m.Encrypted, m.DecryptErr)
			}
			if tt.err != nil && m.Plaintext != nil {
				t.Fatal("plaintext set with an error")
			}
		})
	}
}

func TestRequests(t *testing.T) {
	f := newFake(t)
	f.onFrame = func(fc *fakeConn, typ string, b []byte) bool {
		switch typ {
		case "legacy_req": // answered without _reqId: FIFO fallback
			fc.send(map[string]string{"type": "legacy_resp"})
		case "poke": // no response; an unrelated error and frame instead
			fc.send(wire.Error{Type: wire.TypeError, Code: "no_hello", Message: "must send hello first"})
			fc.send(map[string]string{"type": "state_change", "key": "k"})
		default:
			return false
		}
		return true
	}
	a := dial(t, f, nil)
	b := dial(t, f, withSession)
	ctx := context.Background()

	peers, err := a.ListPeers(ctx)
	if err != nil || len(peers) != 2 {
		t.Fatalf("peers %+v %v", peers, err)
	}
	st, err := a.MessageStatus(ctx, "abcdef0123456789")
	if err != nil || st.MessageID != "abcdef0123456789" || !st.Delivered {
		t.Fatalf("status %+v %v", st, err)
	}
	var se *ServerError
	if _, err := a.Request(ctx, map[string]any{"type": "bogus"}, "bogus_result"); !errors.As(err, &se) || se.Code != "unknown_message_type" {
		t.Fatalf("unknown type: %v", err)
	}
	if resp, err := a.Request(ctx, map[string]any{"type": "legacy_req"}, "legacy_resp"); err != nil || !json.Valid(resp) {
		t.Fatalf("fifo: %s %v", resp, err)
	}
	// A send nobody can receive is acked queued:false.
	var ae *AckError
	if _, err := a.Send(ctx, GenerateIdentity().Pubkey, meshd.PriorityNow, []byte("x")); !errors.As(err, &ae) || ae.Reason == "" {
		t.Fatalf("no recipient: %v", err)
	}
	// Concurrent sends are each matched to their own ack.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := b.Send(ctx, a.Pubkey(), meshd.PriorityNow, fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for range 20 {
		if m := recv(t, a.Pushes()); !m.Encrypted {
			t.Fatalf("concurrent DM: %+v", m)
		}
	}
	if err := a.SendFrame(ctx, map[string]string{"type": "poke"}); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, a.Errors()); e.Code != "no_hello" {
		t.Fatalf("Errors(): %+v", e)
	}
	if fr := recv(t, a.Frames()); !json.Valid(fr) {
		t.Fatalf("Frames(): %s", fr)
	}
	if err := a.SetStatus(ctx, meshd.StatusDND); err != nil {
		t.Fatal(err)
	}
	eventually(t, "set_status frame", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.frames["set_status"]) == 1
	})
}

func TestRequestTimeout(t *testing.T) {
	f := newFake(t)
	f.onFrame = func(*fakeConn, string, []byte) bool { return true } // never answer
	c := dial(t, f, func(cfg *Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	if _, err := c.ListPeers(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ListPeers(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d pending requests leaked", n)
	}
}

// TestRequestFailsOnConnectionLoss: a request in flight when the socket
// dies fails with ErrConnectionLost rather than waiting for its timeout.
func TestRequestFailsOnConnectionLoss(t *testing.T) {
	f := newFake(t)
	f.onFrame = func(fc *fakeConn, typ string, b []byte) bool {
		if typ == wire.TypeListPeers {
			fc.drop()
			return true
		}
		return false
	}
	c := dial(t, f, func(cfg *Config) { cfg.Reconnect = true })
	start := time.Now()
	if _, err := c.ListPeers(context.Background()); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("err = %v, want ErrConnectionLost", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestStaleTerminates: when nothing arrives for StaleAfter (the broker
// stopped reading, so no pongs), the client terminates the socket (B.1).
func TestStaleTerminates(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.afterHello = func(*fakeConn, int) { <-release }
	c := dial(t, f, func(cfg *Config) {
		cfg.PingInterval = 20 * time.Millisecond
		cfg.StaleAfter = 100 * time.Millisecond
	})
	waitDone(t, c)
	if !errors.Is(c.Err(), ErrStale) {
		t.Fatalf("Err() = %v, want ErrStale", c.Err())
	}
}

// TestPingsKeepAlive: with a responsive broker, pings keep the socket up
// well past StaleAfter.
func TestPingsKeepAlive(t *testing.T) {
	f := newFake(t)
	c := dial(t, f, func(cfg *Config) {
		cfg.PingInterval = 50 * time.Millisecond
		cfg.StaleAfter = 500 * time.Millisecond
	})
	time.Sleep(1500 * time.Millisecond)
	select {
	case <-c.Done():
		t.Fatalf("stopped: %v", c.Err())
	default:
	}
}

// TestPushOverflow: a full Pushes() drops new pushes, counts them and does
// not client_ack them (so the broker redelivers).
func TestPushOverflow(t *testing.T) {
	f := newFake(t)
	f.afterHello = func(fc *fakeConn, n int) {
		for range 5 {
			fc.send(wire.Push{Type: wire.TypePush, MessageID: meshd.NewID(), SenderPubkey: "system", Subtype: "system"})
		}
	}
	c := dial(t, f, func(cfg *Config) { cfg.PushBuffer = 2; cfg.AckPushes = true })
	eventually(t, "drops", func() bool { return c.Stats().PushesDropped == 3 })
	eventually(t, "acks", func() bool { return len(f.clientAcks()) == 2 })
	recv(t, c.Pushes())
	recv(t, c.Pushes())
	time.Sleep(50 * time.Millisecond)
	if n := len(f.clientAcks()); n != 2 {
		t.Fatalf("%d client_acks, want 2", n)
	}
}

func TestCloseGraceful(t *testing.T) {
	f := newFake(t)
	c := dial(t, f, func(cfg *Config) { cfg.Reconnect = true })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "close frame", func() bool { return slices.Equal(f.closeCodes(), []int{1000}) })
	if c.Err() != nil {
		t.Fatalf("Err() after Close = %v", c.Err())
	}
	if _, err := c.Send(context.Background(), "*", meshd.PriorityNow, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	time.Sleep(1200 * time.Millisecond)
	if n := f.helloCount(); n != 1 {
		t.Fatalf("reconnected after Close: %d hellos", n)
	}
}

func FuzzDecodePush(f *testing.F) {
	me := seedIdentity(f, 0x02)
	sender := seedIdentity(f, 0x01)
	nonce, ct, _ := SealDM([]byte("seed"), me.Pubkey, sender)
	seed, _ := json.Marshal(wire.Push{Type: "push", SenderPubkey: sender.Pubkey, Nonce: nonce, Ciphertext: ct})
	f.Add(seed)
	f.Add([]byte(`{"type":"push","subtype":"system","senderPubkey":"system","event":"peer_joined"}`))
	c := &Client{cfg: Config{Member: me}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p wire.Push
		if json.Unmarshal(b, &p) != nil {
			return
		}
		m := c.decode(p)
		if m.DecryptErr != nil && m.Plaintext != nil {
			t.Fatal("plaintext with error")
		}
	})
}
