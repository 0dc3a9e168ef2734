package client

import (
	"context"
	"encoding/json"
	"sync"
	"unicode/utf8"

	"github.com/meshd/meshd/wire"
)

// Message is a received push with its body decoded (B.12 "decoding a
// push").
type Message struct {
	Push wire.Push
	// Plaintext is the decoded body: nil for system pushes; the opened
	// crypto_box for DMs; the base64-decoded ciphertext for broadcast,
	// group, scheduled and webhook bodies.
	Plaintext []byte
	// Encrypted is true when Plaintext came out of a crypto_box (a DM).
	Encrypted bool
	// DecryptErr is set when the body could not be decoded; Plaintext is
	// then nil.
	DecryptErr error
}

// System reports whether the push is a broker event (peer_joined, …)
// described by Push.Event and Push.EventData.
func (m Message) System() bool {
	return m.Push.Subtype == "system" || m.Push.SenderPubkey == "system"
}

// DedupeKey is what receivers dedupe on: client_message_id, else messageId.
func (m Message) DedupeKey() string {
	if m.Push.ClientMessageID != "" {
		return m.Push.ClientMessageID
	}
	return m.Push.MessageID
}

// handlePush decodes a push, offers it to Pushes() and, when accepted and
// AckPushes is on, confirms it with client_ack (B.4.4).
func (c *Client) handlePush(cn *conn, b []byte) {
	var p wire.Push
	if err := json.Unmarshal(b, &p); err != nil {
		c.stats.malformed.Add(1)
		c.cfg.Logger.Warn().Err(err).Msg("undecodable push")
		return
	}
	if !offer(c.pushes, c.decode(p), &c.stats.pushesDropped) {
		c.cfg.Logger.Warn().Str("message", p.MessageID).Msg("push dropped: Pushes() full")
		return
	}
	if !c.cfg.AckPushes || c.cfg.DeferAcks || p.MessageID == "" {
		return
	}
	// Blocks only while the write queue is full, which the write loop's
	// WriteTimeout bounds; gives up when the socket dies.
	_ = cn.enqueue(context.Background(), clientAck(p))
}

func clientAck(p wire.Push) []byte {
	ack := wire.ClientAck{Type: wire.TypeClientAck, ClientMessageID: p.ClientMessageID, BrokerMessageID: p.MessageID}
	if ack.ClientMessageID == "" {
		ack.ClientMessageID = p.MessageID
	}
	ab, _ := json.Marshal(ack)
	return ab
}

// Ack confirms m with client_ack (B.4.4) on the current socket, waiting
// for a reconnect if needed: the broker matches acks by our keys, not by
// socket. It is for Config.DeferAcks; a push without a messageId (system
// events) needs none and returns nil.
func (c *Client) Ack(ctx context.Context, m Message) error {
	if m.Push.MessageID == "" {
		return nil
	}
	return c.SendFrame(ctx, json.RawMessage(clientAck(m.Push)))
}

// decode applies B.12: system pushes are not decoded; a push with a hex
// sender, a nonce and a ciphertext is first opened as a DM against our
// session secret, then our member secret; otherwise (or when that fails,
// as it does for broadcasts, which carry a sender and nonce too) the
// ciphertext is base64 plaintext. After a failed DM open the base64 body is
// accepted only if it is valid UTF-8 — real clients send UTF-8 text — so a
// tampered or misaddressed DM reports ErrDecrypt rather than garbage.
func (c *Client) decode(p wire.Push) Message {
	m := Message{Push: p}
	if m.System() {
		return m
	}
	if p.BodyVersion == 2 {
		m.DecryptErr = ErrTopicKey
		return m
	}
	// A topic post (v1) is base64 plaintext though it carries a sender.
	dm := p.Topic == "" && isHex64(p.SenderPubkey) && p.Nonce != "" && p.Ciphertext != ""
	if dm {
		pt, err := c.openDM(p)
		if err == nil {
			m.Plaintext, m.Encrypted = pt, true
			return m
		}
		m.DecryptErr = err
	}
	pt, err := DecodeBroadcast(p.Ciphertext)
	switch {
	case err != nil && m.DecryptErr == nil:
		m.DecryptErr = err
	case err == nil && (!dm || utf8.Valid(pt)):
		m.Plaintext, m.DecryptErr = pt, nil
	}
	return m
}

// openDM opens p with our session secret, then our member secret.
func (c *Client) openDM(p wire.Push) ([]byte, error) {
	ids := []Identity{c.cfg.Member}
	if c.cfg.Session != nil {
		ids = []Identity{*c.cfg.Session, c.cfg.Member}
	}
	return openWith(p.Nonce, p.Ciphertext, func(i int) (*[32]byte, error) {
		if i >= len(ids) {
			return nil, nil
		}
		return c.keys.get(p.SenderPubkey, ids[i])
	})
}

// keyCacheMax bounds keyCache; when full it is emptied (peers are few and
// recomputing costs about a millisecond).
const keyCacheMax = 4096

// keyCache memoizes crypto_box shared keys per (peer, own key): the
// ed25519→X25519 conversion validates the point with big-number
// arithmetic, too slow to repeat for every message. Failures are cached too.
type keyCache struct {
	mu sync.Mutex
	m  map[[2]string]cachedKey // guarded by mu
}

type cachedKey struct {
	key *[32]byte
	err error
}

func (k *keyCache) get(peerHex string, self Identity) (*[32]byte, error) {
	id := [2]string{peerHex, self.Pubkey}
	k.mu.Lock()
	e, ok := k.m[id]
	k.mu.Unlock()
	if ok {
		return e.key, e.err
	}
	peer, err := decodePubkey(peerHex)
	if err == nil {
		e.key, e.err = sharedKey(peer, self.Secret)
	} else {
		e.err = err
	}
	k.mu.Lock()
	if k.m == nil || len(k.m) >= keyCacheMax {
		k.m = make(map[[2]string]cachedKey)
	}
	k.m[id] = e
	k.mu.Unlock()
	return e.key, e.err
}
