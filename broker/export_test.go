package broker

// HoldHelloSlots takes n of the replica's hello admission turns (Config.
// HelloConcurrency) until release is called, so a test can queue a hello.
func (s *Server) HoldHelloSlots(n int) (release func()) {
	for range n {
		s.helloSlots <- struct{}{}
	}
	return func() {
		for range n {
			<-s.helloSlots
		}
	}
}

// LateHellos counts sockets whose hello is queued or being handled while
// the hello deadline has passed.
func (s *Server) LateHellos() int {
	s.hub.mu.Lock()
	conns := make([]*conn, 0, len(s.hub.conns))
	for _, c := range s.hub.conns {
		conns = append(conns, c)
	}
	s.hub.mu.Unlock()
	n := 0
	for _, c := range conns {
		c.mu.Lock()
		if c.helloBusy && c.helloLate {
			n++
		}
		c.mu.Unlock()
	}
	return n
}
