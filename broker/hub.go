package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/olahol/melody"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Hub owns this replica's connection registry and the mesh-topic
// subscriptions that feed broadcasts and system events to local sockets.
type Hub struct {
	srv *Server // immutable

	mu       sync.Mutex                    // guards the maps below
	conns    map[*melody.Session]*conn     // every socket, authed or not
	byMesh   map[string]map[*conn]struct{} // authenticated sockets per mesh
	meshSubs map[string]func()             // mesh topic interest, one per local mesh
	preIP    map[string]int                // sockets per client IP not past hello (reserved in serveWS)
	preConn  map[*conn]string              // the IP each such socket counts against

	// live counts sockets whose disconnect handling (lease, peer_state,
	// claim release) has not finished; Shutdown waits for it so that work
	// is done before the pool closes.
	live sync.WaitGroup

	// Mesh events are handled off the NATS callback by a fixed pool; a mesh
	// always maps to the same worker so its events keep their order. A full
	// queue drops the event (counted as fanout_overflow): broadcasts are
	// at-most-once by design (B.4.3) and DMs are recovered by the re-drain.
	queues []chan meshEvent
}

const (
	meshWorkers     = 4
	meshWorkerQueue = 1024
)

func newHub(s *Server) *Hub {
	h := &Hub{
		srv:      s,
		conns:    map[*melody.Session]*conn{},
		byMesh:   map[string]map[*conn]struct{}{},
		meshSubs: map[string]func(){},
		preIP:    map[string]int{},
		preConn:  map[*conn]string{},
	}
	for i := 0; i < meshWorkers; i++ {
		h.queues = append(h.queues, make(chan meshEvent, meshWorkerQueue))
	}
	return h
}

func (s *Server) newMelody() *melody.Melody {
	m := melody.New()
	m.Config.MaxMessageSize = int64(s.cfg.MaxMessageBytes)
	m.Config.PingPeriod = s.cfg.PingPeriod
	m.Config.PongWait = s.cfg.PongWait
	m.Config.MessageBufferSize = s.cfg.WriteBuffer
	// Idle sockets hold no write buffer: gorilla takes one from the pool
	// for each write and gives it back (issue 10: memory per connection).
	m.Upgrader.WriteBufferPool = &sync.Pool{}
	m.HandleConnect(s.onConnect)
	m.HandleDisconnect(s.onDisconnect)
	m.HandleMessage(s.onMessage)
	m.HandleMessageBinary(s.onMessage) // B.1: binary frames holding JSON work too
	m.HandlePong(s.onPong)
	m.HandleSentMessage(s.onSent)
	m.HandleError(s.onError)
	return m
}

// connOf returns the conn stored on the session at connect (per-session
// lock only: this runs for every frame read and written).
func (s *Server) connOf(sess *melody.Session) *conn {
	v, ok := sess.Get(connKey)
	if !ok {
		return nil
	}
	return v.(*conn)
}

const connKey = "meshd.conn"

// preauthTicket is serveWS's reservation of one pre-hello slot of an IP;
// onConnect hands it to the socket, which gives it back at hello or close.
type preauthTicket struct {
	ip      string
	claimed bool // set under Hub.mu by onConnect
	// upgraded is closed by onConnect: the socket is up and its request's
	// handler may return (upgrade).
	upgraded chan struct{}
}

type preauthKey struct{}

// reservePreauth takes a pre-hello slot of ip, or reports false when the
// IP already has MaxPreauthPerIP sockets that have not completed hello on
// this replica (issue 12: sockets that never say hello cost an attacker
// nothing but hold memory until the hello timeout).
func (h *Hub) reservePreauth(ip string) (*preauthTicket, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.preIP[ip] >= h.srv.cfg.MaxPreauthPerIP {
		return nil, false
	}
	h.preIP[ip]++
	return &preauthTicket{ip: ip, upgraded: make(chan struct{})}, true
}

// unreservePreauth gives back a ticket no socket claimed (failed upgrade).
func (h *Hub) unreservePreauth(t *preauthTicket) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !t.claimed {
		t.claimed = true
		h.decPreauthLocked(t.ip)
	}
}

// releasePreauthLocked ends c's pre-hello accounting (hello done or socket
// gone); idempotent. Caller holds h.mu.
func (h *Hub) releasePreauthLocked(c *conn) {
	if ip, ok := h.preConn[c]; ok {
		delete(h.preConn, c)
		h.decPreauthLocked(ip)
	}
}

func (h *Hub) decPreauthLocked(ip string) {
	if h.preIP[ip]--; h.preIP[ip] <= 0 {
		delete(h.preIP, ip)
	}
}

func (s *Server) onConnect(sess *melody.Session) {
	c := newConn(s, sess)
	s.hub.live.Add(1)
	sess.Set(connKey, c)
	t, _ := sess.Request.Context().Value(preauthKey{}).(*preauthTicket)
	// Nothing reads the upgrade request after this: keep its address only,
	// not its headers, URL and context chain (about 1 KB per idle socket;
	// docs/benchmarks.md "Idle memory per connection (session 4)").
	sess.Request = &http.Request{RemoteAddr: sess.Request.RemoteAddr}
	s.hub.mu.Lock()
	if t != nil && !t.claimed {
		t.claimed = true
		s.hub.preConn[c] = t.ip
	}
	s.hub.conns[sess] = c
	n := len(s.hub.conns)
	s.hub.mu.Unlock()
	if t != nil {
		close(t.upgraded)
	}
	s.met.connectionsTotal.Inc()
	s.met.connectionsActive.Set(float64(n))
	if s.draining.Load() {
		c.close(wire.ReasonShuttingDown, "")
		return
	}
	c.helloTime = time.AfterFunc(s.cfg.HelloTimeout, func() {
		c.mu.Lock()
		authed, busy := c.authed, c.helloBusy
		c.helloLate = busy
		c.mu.Unlock()
		if !authed && !busy {
			c.close(wire.ReasonHelloTimeout, "")
		}
	})
}

// upgrade hands the request to melody on a goroutine of the socket's own and
// returns once the socket is up (onConnect ran) or the upgrade failed. A
// handler that hijacks keeps net/http's connection alive for as long as it
// runs: its 4 KB read and 4 KB write buffers and the response's 2 KB writer
// would stay with every idle socket (issue 10; docs/benchmarks.md "Idle
// memory per connection (session 4)"). Returning frees them; melody's read
// pump then runs on the goroutine started here. t.upgraded must be closed
// by onConnect; the request's context is cancelled when the handler
// returns, so nothing after onConnect may rely on it.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, t *preauthTicket) error {
	failed := make(chan error, 1)
	go func() {
		defer func() {
			// net/http recovered a panic of the read pump when it ran in
			// the handler; keep the process up the same way.
			if v := recover(); v != nil {
				s.log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("websocket goroutine panicked")
				failed <- errSocketPanic
			}
		}()
		if err := s.m.HandleRequest(w, r); err != nil {
			failed <- err
		}
	}()
	select {
	case <-t.upgraded:
		return nil
	case err := <-failed:
		return err
	}
}

var errSocketPanic = errors.New("websocket goroutine panicked")

func (s *Server) onDisconnect(sess *melody.Session) {
	h := s.hub
	if _, ok := sess.Get(connKey); ok {
		defer h.live.Done()
	}
	h.mu.Lock()
	c := h.conns[sess]
	delete(h.conns, sess)
	if c != nil {
		h.releasePreauthLocked(c)
	}
	n := len(h.conns)
	h.mu.Unlock()
	s.met.connectionsActive.Set(float64(n))
	if c == nil {
		return
	}
	if c.helloTime != nil {
		c.helloTime.Stop()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	authed, pres, member, releases := c.authed, c.pres, c.member, c.releases
	c.releases = nil
	c.mu.Unlock()
	c.cancel(errSocketClosed)
	close(c.done)
	if !authed {
		return
	}
	h.removeAuthed(c, pres.MeshID)
	for _, rel := range releases {
		rel()
	}
	// The presence enters its grace lease unless another socket already took
	// it over (socket id check in the store). peer_left only comes at
	// eviction (B.6.9).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 5*time.Second)
	defer cancel()
	// Rows this socket claimed but never wrote become claimable again at
	// once (after the written ones are marked), so a reattach gets them.
	c.drainer.stop()     // the drain stops at once: c.ctx is cancelled
	c.pendingAcks.Wait() // bounded by the batch timeout
	c.marker.stop()      // written rows are marked before the release
	c.flushMarks()
	if n, err := s.cfg.Store.ReleaseClaims(ctx, c.claimRequest(pres, member)); err != nil {
		c.logger().Warn().Err(err).Msg("release claims")
	} else if n > 0 {
		c.logger().Info().Int64("rows", n).Msg("released unwritten claims")
	}
	owned, err := s.cfg.Store.Detach(ctx, pres.ID, c.socketID, s.cfg.Grace)
	if err != nil {
		c.logger().Warn().Err(err).Msg("detach presence")
	}
	if owned {
		if err := s.cfg.Store.SavePeerState(ctx, pres.ID); err != nil {
			c.logger().Warn().Err(err).Msg("save peer state")
		}
	}
	s.flushStats(ctx, c, pres, owned)
	switch {
	case pres.Ephemeral:
		c.logger().Info().Msg("ws close — ephemeral presence ended")
	case owned:
		c.logger().Info().Dur("grace", s.cfg.Grace).Msg("ws close — lease grace started")
	default:
		c.logger().Info().Msg("ws close — presence already taken over by another socket")
	}
}

var errSocketClosed = errors.New("socket closed")

func (s *Server) onSent(sess *melody.Session, msg []byte) {
	if c := s.connOf(sess); c != nil {
		c.onWritten()
	}
}

func (s *Server) onPong(sess *melody.Session) {
	c := s.connOf(sess)
	if c == nil {
		return
	}
	pres, _, ok := c.snapshot()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Touch(ctx, pres.ID, c.socketID); err != nil {
		c.logger().Debug().Err(err).Msg("heartbeat")
	}
}

func (s *Server) onError(sess *melody.Session, err error) {
	c := s.connOf(sess)
	if c == nil {
		return
	}
	if errors.Is(err, melody.ErrMessageBufferFull) {
		// Slow consumer: stop pushing (rows stay claimed and are redelivered
		// after the lease) and try to close; if even the close frame cannot
		// be queued, melody's write deadline ends the socket.
		if c.slow.CompareAndSwap(false, true) {
			c.logger().Warn().Msg("slow consumer: output buffer full")
			go c.closeSlow()
		}
		return
	}
	c.logger().Debug().Err(err).Msg("ws error")
}

func (c *conn) closeSlow() {
	c.srv.met.closes.WithLabelValues(wire.ReasonSlowConsumer.Metric()).Inc()
	c.closing.Store(true)
	msg := melody.FormatCloseMessage(wire.ReasonSlowConsumer.CloseCode(), wire.ReasonSlowConsumer.CloseText())
	// The close frame is dropped while the buffer is full; retry until the
	// writer catches up or its write deadline ends the socket.
	for i := 0; i < 50 && !c.sess.IsClosed(); i++ {
		_ = c.sess.CloseWithMsg(msg)
		time.Sleep(100 * time.Millisecond)
	}
}

// addAuthed registers an authenticated socket and takes mesh-topic interest
// for its mesh when it is the first local one.
func (h *Hub) addAuthed(c *conn, meshID string) error {
	h.mu.Lock()
	h.releasePreauthLocked(c) // past hello: no longer pre-auth
	set := h.byMesh[meshID]
	if set == nil {
		set = map[*conn]struct{}{}
		h.byMesh[meshID] = set
	}
	set[c] = struct{}{}
	_, subscribed := h.meshSubs[meshID]
	h.mu.Unlock()
	if subscribed {
		return nil
	}
	rel, err := h.srv.cfg.Fanout.Subscribe(meshd.MeshTopic(meshID), func(data []byte) { h.enqueue(meshID, data) })
	if err != nil {
		h.removeAuthed(c, meshID)
		return fmt.Errorf("subscribe mesh topic: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.meshSubs[meshID]; dup || len(h.byMesh[meshID]) == 0 {
		rel()
		return nil
	}
	h.meshSubs[meshID] = rel
	return nil
}

func (h *Hub) removeAuthed(c *conn, meshID string) {
	h.mu.Lock()
	set := h.byMesh[meshID]
	if _, ok := set[c]; !ok {
		h.mu.Unlock()
		return
	}
	delete(set, c)
	var rel func()
	if len(set) == 0 {
		delete(h.byMesh, meshID)
		rel = h.meshSubs[meshID]
		delete(h.meshSubs, meshID)
	}
	h.mu.Unlock()
	if rel != nil {
		rel()
	}
}

// meshConns returns a snapshot of the authenticated sockets of meshID.
func (h *Hub) meshConns(meshID string) []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*conn, 0, len(h.byMesh[meshID]))
	for c := range h.byMesh[meshID] {
		out = append(out, c)
	}
	return out
}

// allConns returns a snapshot of every socket.
func (h *Hub) allConns() []*conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		out = append(out, c)
	}
	return out
}

// localMeshes lists meshes with at least one local authenticated socket.
func (h *Hub) localMeshes() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.byMesh))
	for id := range h.byMesh {
		out = append(out, id)
	}
	return out
}

func (h *Hub) enqueue(meshID string, data []byte) {
	f := fnv.New32a()
	_, _ = f.Write([]byte(meshID))
	q := h.queues[int(f.Sum32())%len(h.queues)]
	select {
	case q <- meshEvent{meshID: meshID, data: data}:
	default:
		h.srv.met.pushDropped.WithLabelValues("fanout_overflow").Inc()
	}
}

// workers runs the mesh-event pool until ctx ends.
func (h *Hub) workers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, q := range h.queues {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-q:
					h.srv.handleMeshEvent(ctx, ev)
				}
			}
		}()
	}
	wg.Wait()
}

// closeAll closes every local socket with r at a bounded rate (so a large
// replica does not send all its clients to the others in one instant) and
// puts their presences into the grace lease.
func (h *Hub) closeAll(ctx context.Context, r wire.Reason) {
	h.mu.Lock()
	all := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		all = append(all, c)
	}
	h.mu.Unlock()
	const perTick = 200
	for i, c := range all {
		c.close(r, "")
		if (i+1)%perTick == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	done := make(chan struct{})
	go func() { h.live.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
}

// ConsistencyCheck cross-checks the registry maps and the active-connection
// gauge (STYLE #6); tests call it.
func (h *Hub) ConsistencyCheck() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	authed := 0
	for meshID, set := range h.byMesh {
		if len(set) == 0 {
			errs = append(errs, fmt.Errorf("mesh %s: empty set kept", meshID))
		}
		if _, ok := h.meshSubs[meshID]; !ok {
			errs = append(errs, fmt.Errorf("mesh %s: sockets but no mesh subscription", meshID))
		}
		for c := range set {
			authed++
			if h.conns[c.sess] != c {
				errs = append(errs, fmt.Errorf("mesh %s: socket %s not in conns", meshID, c.socketID))
			}
		}
	}
	for meshID := range h.meshSubs {
		if len(h.byMesh[meshID]) == 0 {
			errs = append(errs, fmt.Errorf("mesh %s: subscription without sockets", meshID))
		}
	}
	if authed > len(h.conns) {
		errs = append(errs, fmt.Errorf("%d authed sockets > %d sockets", authed, len(h.conns)))
	}
	return errors.Join(errs...)
}

// Counts reports (sockets, authenticated sockets) on this replica.
func (h *Hub) Counts() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.byMesh {
		n += len(set)
	}
	return len(h.conns), n
}
