package client

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Defaults for the zero values of Config (B.1 "client liveness").
const (
	DefaultHelloTimeout   = 5 * time.Second  // hello_ack wait, as the CLI
	DefaultRequestTimeout = 10 * time.Second // ack / response wait
	DefaultPingInterval   = 30 * time.Second // WS ping period
	DefaultStaleAfter     = 75 * time.Second // terminate when nothing arrived for this long
	DefaultWriteTimeout   = 10 * time.Second // a stuck TCP write fails instead of blocking forever
	DefaultPushBuffer     = 1024             // Pushes() capacity
	// AttestationTTL is how long a minted session attestation is valid;
	// the CLI's DEFAULT_ATTESTATION_TTL_MS (B.3), under the broker's 24 h cap.
	AttestationTTL = 12 * time.Hour
)

// Config describes one broker connection. Zero values take the documented
// defaults; Dial validates the rest. Nothing is configurable after Dial.
type Config struct {
	// URL is the broker's WebSocket endpoint, ws:// or wss://, e.g.
	// "ws://localhost:7900/ws".
	URL string
	// MeshID is mesh.id (not the slug).
	MeshID string
	// MemberID is the member's id. hello signs it (B.2) so it is required
	// without Session; session_hello sends it as parentMemberId when set.
	MemberID string
	// Member is the member keypair.
	Member Identity
	// Session, when non-nil, makes the connection a per-session presence:
	// session_hello with an attestation signed by Member, valid for
	// AttestationTTL and re-minted on every (re)connect (B.3). Nil sends a
	// member-key hello (control-plane connection).
	Session *Identity

	// SessionID is the dedup/reattach key; default "<pid>-<unix ms>".
	SessionID   string
	DisplayName string
	// CWD defaults to the process working directory; PID to os.Getpid().
	CWD string
	PID int
	// Groups are the initial groups; nil lets the broker choose.
	Groups                             []meshd.Group
	PeerType, Channel, Hostname, Model string

	// AckPushes advertises capabilities ["client_ack"] and sends a
	// client_ack for every push accepted into Pushes(), which gives
	// at-least-once delivery (A.3-4). Off, the client behaves as a legacy
	// client: the broker marks pushes delivered when it writes them.
	AckPushes bool
	// Ephemeral (member-key hello only) advertises capability "ephemeral":
	// a one-shot control-plane connection other peers do not see, which
	// ends at once on close, without a grace lease (A.3-32).
	Ephemeral bool
	// DeferAcks, with AckPushes, leaves the client_ack to the caller
	// (Client.Ack) so a push is confirmed only once it was shown to
	// someone: a crash before that loses nothing, the broker redelivers.
	DeferAcks bool
	// Reconnect re-dials after a lost connection with backoff 1, 2, 4, 8,
	// 16 s, then 30 s forever, reset on hello_ack (B.1). Terminal closes
	// stop the client regardless: 4001, 4002, and the closes the broker's
	// reason table marks terminal (session_replaced, and hello rejections
	// such as bad_signature or unauthorized that a retry cannot fix).
	Reconnect bool

	// Logger receives connection logs; the zero value logs nothing.
	Logger zerolog.Logger
	// OnEvent, if set, is called for connection lifecycle events from the
	// client's supervisor goroutine; it must not block or call Close.
	OnEvent func(Event)
	// Dialer defaults to websocket.DefaultDialer; Header is sent with the
	// upgrade request.
	Dialer *websocket.Dialer
	Header http.Header
	// Now is the clock for hello timestamps; default time.Now.
	Now func() time.Time

	HelloTimeout   time.Duration // default DefaultHelloTimeout
	RequestTimeout time.Duration // default DefaultRequestTimeout
	PingInterval   time.Duration // default DefaultPingInterval
	StaleAfter     time.Duration // default DefaultStaleAfter
	WriteTimeout   time.Duration // default DefaultWriteTimeout
	PushBuffer     int           // default DefaultPushBuffer
}

// withDefaults validates c and fills its zero values.
func (c Config) withDefaults() (Config, error) {
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("client: config: %w", err)
	}
	durations := []struct {
		p *time.Duration
		d time.Duration
	}{
		{&c.HelloTimeout, DefaultHelloTimeout},
		{&c.RequestTimeout, DefaultRequestTimeout},
		{&c.PingInterval, DefaultPingInterval},
		{&c.StaleAfter, DefaultStaleAfter},
		{&c.WriteTimeout, DefaultWriteTimeout},
	}
	for _, f := range durations {
		if *f.p == 0 {
			*f.p = f.d
		}
	}
	if c.PushBuffer == 0 {
		c.PushBuffer = DefaultPushBuffer
	}
	if c.Dialer == nil {
		c.Dialer = websocket.DefaultDialer
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PID == 0 {
		c.PID = os.Getpid()
	}
	if c.CWD == "" {
		c.CWD, _ = os.Getwd()
	}
	if c.SessionID == "" {
		c.SessionID = fmt.Sprintf("%d-%d", c.PID, c.Now().UnixMilli())
	}
	return c, nil
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("URL %q is not a ws:// or wss:// URL", c.URL)
	}
	if c.MeshID == "" {
		return fmt.Errorf("MeshID is required")
	}
	if err := c.Member.valid(); err != nil {
		return fmt.Errorf("Member: %w", err)
	}
	if c.Session == nil && c.MemberID == "" {
		return fmt.Errorf("MemberID is required for a member-key hello")
	}
	if c.Session != nil {
		if err := c.Session.valid(); err != nil {
			return fmt.Errorf("Session: %w", err)
		}
	}
	for _, d := range []time.Duration{c.HelloTimeout, c.RequestTimeout, c.PingInterval, c.StaleAfter, c.WriteTimeout} {
		if d < 0 {
			return fmt.Errorf("negative timeout %v", d)
		}
	}
	if c.PushBuffer < 0 {
		return fmt.Errorf("negative PushBuffer")
	}
	return nil
}

// routingPubkey is the key peers address this connection by.
func (c *Config) routingPubkey() string {
	if c.Session != nil {
		return c.Session.Pubkey
	}
	return c.Member.Pubkey
}

// EventKind names a connection lifecycle event.
type EventKind string

// Lifecycle events passed to Config.OnEvent.
const (
	EventConnected       EventKind = "connected"        // hello_ack received; HelloAck set
	EventDisconnected    EventKind = "disconnected"     // socket lost; Err says why
	EventReconnecting    EventKind = "reconnecting"     // waiting Delay before attempt Attempt
	EventReconnectFailed EventKind = "reconnect_failed" // attempt Attempt failed with Err
	EventTerminal        EventKind = "terminal"         // the client stopped for good; Err says why
)

// Event is a connection lifecycle event.
type Event struct {
	Kind     EventKind
	Attempt  int
	Delay    time.Duration
	Err      error
	HelloAck *wire.HelloAck
}
