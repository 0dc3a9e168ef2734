-- Ephemeral presences (docs/protocol.md A.3-32): control-plane connections
-- of one-shot commands that other peers do not see. They are left out of
-- peer lists, take no grace lease and save no peer_state; a close or a
-- lease of their node ends them at once.
ALTER TABLE mesh.presence ADD COLUMN ephemeral boolean NOT NULL DEFAULT false;
