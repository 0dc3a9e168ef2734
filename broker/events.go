package broker

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Topics (meshd.MeshTopic, PeerTopic, PresenceTopic; the fanout prefixes
// and maps them to subjects): mesh.<id> carries broadcasts, multicasts and
// system events of a mesh; peer.<mesh>.<pubkey> wakes the sockets of a
// member or session key; presence.<id> closes one presence's socket.

type meshEvent struct {
	meshID string
	data   []byte
}

func (s *Server) publishMesh(ctx context.Context, meshID string, ev meshd.MeshEvent) error {
	data, err := ev.Encode()
	if err != nil {
		return err
	}
	return s.cfg.Fanout.Publish(ctx, meshd.MeshTopic(meshID), data)
}

// publishFrame sends frame to every socket of the mesh on every replica
// except exclPresence (state_change, B.14.1).
func (s *Server) publishFrame(ctx context.Context, meshID string, frame any, exclPresence string) error {
	raw, err := json.Marshal(frame)
	if err != nil {
		return err
	}
	return s.publishMesh(ctx, meshID, meshd.MeshEvent{Kind: meshd.MeshEventFrame, Frame: raw, ExcludePresenceID: exclPresence})
}

// publishSystem sends a B.4.3 system push (A.3-12 payload) to the mesh.
func (s *Server) publishSystem(ctx context.Context, meshID, event string, data wire.SystemEvent, exclMember, exclPresence string) error {
	if data.Groups == nil {
		data.Groups = []meshd.Group{}
	}
	push, err := wire.SystemPush(meshID, event, data, s.cfg.Now())
	if err != nil {
		return err
	}
	return s.publishMesh(ctx, meshID, meshd.MeshEvent{
		Kind: meshd.MeshEventSystem, ExcludeMemberPubkey: exclMember, ExcludePresenceID: exclPresence, Push: push,
	})
}

func (s *Server) handleMeshEvent(ctx context.Context, ev meshEvent) {
	var msg meshd.MeshEvent
	err := json.Unmarshal(ev.data, &msg)
	if err == nil && msg.Kind == meshd.MeshEventArchived {
		s.closeMesh(ev.meshID)
		return
	}
	if err != nil || (msg.Push == nil && msg.Frame == nil) {
		s.log.Warn().Str("mesh_id", ev.meshID).Msg("bad mesh event")
		return
	}
	conns := s.hub.meshConns(ev.meshID)
	if len(conns) == 0 {
		return
	}
	frame := []byte(msg.Frame)
	if msg.Push != nil {
		frame = msg.Push
	}
	switch msg.Kind {
	case meshd.MeshEventBroadcast:
		s.deliverBroadcast(ctx, ev.meshID, &msg, frame, conns)
	case meshd.MeshEventSystem, meshd.MeshEventFrame:
		for _, c := range conns {
			pres, member, ok := c.snapshot()
			if !ok || pres.ID == msg.ExcludePresenceID || (msg.ExcludeMemberPubkey != "" && member.Pubkey == msg.ExcludeMemberPubkey) {
				continue
			}
			c.write(frame)
		}
	}
}

// subscribeConn takes this socket's fan-out interest: wake-ups for its
// member and session pubkeys and control messages for its presence.
func (s *Server) subscribeConn(c *conn, pres meshd.Presence, member meshd.Member) ([]func(), error) {
	wake := func([]byte) { c.wake() }
	topics := []string{meshd.PeerTopic(pres.MeshID, member.Pubkey), meshd.PresenceTopic(pres.ID)}
	deliver := []func([]byte){wake, func(data []byte) { s.onPresenceControl(c, data) }}
	if pres.SessionPubkey != "" {
		topics = append(topics, meshd.PeerTopic(pres.MeshID, pres.SessionPubkey))
		deliver = append(deliver, wake)
	}
	rel, err := s.cfg.Fanout.SubscribeAll(topics, deliver)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return []func(){rel}, nil
}

func releaseAll(rels []func()) {
	for _, rel := range rels {
		rel()
	}
}

func (s *Server) onPresenceControl(c *conn, data []byte) {
	var pc meshd.PresenceControl
	if err := json.Unmarshal(data, &pc); err != nil {
		return
	}
	if pc.SocketID != "" && pc.SocketID != c.socketID {
		return
	}
	r, ok := wire.FromMetric(pc.Reason)
	if !ok {
		return
	}
	c.close(r, "")
}

// closePresence asks whichever replica holds the socket to close it.
func (s *Server) closePresence(ctx context.Context, presenceID, socketID string, r wire.Reason) error {
	data, err := json.Marshal(meshd.PresenceControl{SocketID: socketID, Reason: r.Metric()})
	if err != nil {
		return err
	}
	return s.cfg.Fanout.Publish(ctx, meshd.PresenceTopic(presenceID), data)
}
