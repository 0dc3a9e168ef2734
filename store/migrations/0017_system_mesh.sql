-- 0017: the reserved system mesh of the delivery canary (broker/canary.go,
-- meshd.SystemMeshID). It is archived from birth: hello only resolves
-- members of live meshes, so no client ever joins it, claims its rows or is
-- woken for them. Its one member is the sender of every canary row. The
-- canary deletes its rows once claimed (and any older than five minutes);
-- the queue gauges and the audit outbox leave this mesh out.
INSERT INTO mesh.mesh (id, slug, name, archived_at)
VALUES ('meshd-system', NULL, 'meshd system (delivery canary)', now())
ON CONFLICT (id) DO NOTHING;

INSERT INTO mesh.member (id, mesh_id, peer_pubkey, display_name, role)
VALUES ('meshd-system-canary', 'meshd-system', 'meshd-canary', 'delivery canary', 'member')
ON CONFLICT (id) DO NOTHING;
