package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/wire"
)

// protocolVersion is upstream's WS_PROTOCOL_VERSION (B.2; accepted and
// ignored by brokers).
const protocolVersion = 1

// helloFrame builds a hello (B.2) or, with a session identity, a
// session_hello with a freshly minted attestation (B.3). Timestamps are
// integer ms, rendered by the wire canonical helpers as JS would.
func (c *Client) helloFrame(now time.Time) ([]byte, error) {
	cfg := &c.cfg
	ts := now.UnixMilli()
	var caps []string
	if cfg.AckPushes {
		caps = append(caps, "client_ack")
	}
	if cfg.Ephemeral && cfg.Session == nil {
		caps = append(caps, "ephemeral")
	}
	pid, cwd := cfg.PID, cfg.CWD
	info := wire.PeerInfo{
		DisplayName: cfg.DisplayName, SessionID: cfg.SessionID, PID: &pid, CWD: &cwd,
		Hostname: cfg.Hostname, PeerType: cfg.PeerType, Channel: cfg.Channel, Model: cfg.Model,
		Groups: cfg.Groups, ProtocolVersion: protocolVersion, Capabilities: caps,
	}
	if cfg.Session == nil {
		return json.Marshal(wire.Hello{
			Type: wire.TypeHello, MeshID: cfg.MeshID, MemberID: cfg.MemberID, Pubkey: cfg.Member.Pubkey,
			PeerInfo: info, Timestamp: jsonInt(ts),
			Signature: wire.Sign(cfg.Member.Secret, wire.HelloCanonical(cfg.MeshID, cfg.MemberID, cfg.Member.Pubkey, float64(ts))),
		})
	}
	att, err := json.Marshal(mintAttestation(cfg.Member, *cfg.Session, ts+AttestationTTL.Milliseconds()))
	if err != nil {
		return nil, err
	}
	s := cfg.Session
	return json.Marshal(wire.SessionHello{
		Type: wire.TypeSessionHello, MeshID: cfg.MeshID, ParentMemberID: cfg.MemberID,
		ParentMemberPubkey: cfg.Member.Pubkey, SessionPubkey: s.Pubkey, ParentAttestation: att,
		PeerInfo: info, Timestamp: jsonInt(ts),
		Signature: wire.Sign(s.Secret, wire.SessionHelloCanonical(cfg.MeshID, cfg.Member.Pubkey, s.Pubkey, float64(ts))),
	})
}

// mintAttestation has parent vouch for session until expiresAt (ms, B.3).
func mintAttestation(parent, session Identity, expiresAt int64) wire.Attestation {
	return wire.Attestation{
		SessionPubkey:      session.Pubkey,
		ParentMemberPubkey: parent.Pubkey,
		ExpiresAt:          jsonInt(expiresAt),
		Signature:          wire.Sign(parent.Secret, wire.AttestationCanonical(parent.Pubkey, session.Pubkey, float64(expiresAt))),
	}
}

func jsonInt(v int64) json.RawMessage { return json.RawMessage(strconv.FormatInt(v, 10)) }

// rejectCloseWait bounds how long we wait for the close frame that follows a
// handshake error frame, to report its code and reason.
const rejectCloseWait = time.Second

// maxEarlyFrames bounds the frames kept from before hello_ack.
const maxEarlyFrames = 1024

// awaitHelloAck reads until hello_ack, a rejection, or the hello timeout. A
// rejection is an error frame and/or a close frame (B.2, B.3); both end up
// in RejectedError. meshd sends hello_ack first (A.3-19) but upstream drains
// queued pushes just before it (B.2 step 9), so other frames read here are
// returned, to be dispatched once the connection is up.
func (c *Client) awaitHelloAck(ws *websocket.Conn) (*wire.HelloAck, [][]byte, error) {
	if err := ws.SetReadDeadline(time.Now().Add(c.cfg.HelloTimeout)); err != nil {
		return nil, nil, err
	}
	var (
		rej   *RejectedError
		early [][]byte
	)
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			return nil, nil, helloReadErr(err, rej)
		}
		var env wire.Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			c.cfg.Logger.Warn().Err(err).Msg("unparseable frame before hello_ack")
			continue
		}
		switch env.Type {
		case wire.TypeHelloAck:
			if rej != nil {
				return nil, nil, rej
			}
			var ack wire.HelloAck
			if err := json.Unmarshal(b, &ack); err != nil {
				return nil, nil, fmt.Errorf("client: decoding hello_ack: %w", err)
			}
			return &ack, early, nil
		case wire.TypeError:
			var e wire.Error
			_ = json.Unmarshal(b, &e)
			rej = &RejectedError{Code: e.Code, Message: e.Message}
			_ = ws.SetReadDeadline(time.Now().Add(rejectCloseWait))
		default:
			if len(early) == maxEarlyFrames {
				return nil, nil, fmt.Errorf("%w: %d frames before hello_ack", ErrConnectionLost, len(early))
			}
			early = append(early, b)
		}
	}
}

func helloReadErr(err error, rej *RejectedError) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if rej == nil {
			rej = &RejectedError{}
		}
		rej.CloseCode, rej.CloseReason = ce.Code, ce.Text
		return rej
	}
	if rej != nil {
		return rej
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrHelloTimeout
	}
	return fmt.Errorf("%w: reading hello_ack: %v", ErrConnectionLost, err)
}
