-- 0023: presence slots — the per-mesh cap without a per-mesh lock (issue
-- 10). A live presence of a capped mesh holds a slot number in
-- [0, MAX_CONNECTIONS_PER_MESH); a unique index over the live rows' (mesh,
-- slot) makes the cap exact across replicas. A new presence takes a free
-- slot under that slot's advisory lock (two-key form, held to commit), so a
-- slot another hello is taking is skipped instead of waited for: hellos of
-- one mesh run in parallel. Rows ended (disconnected_at set) leave the index
-- and free their slot; a reattached row keeps its slot. Rows without a slot
-- (inserted while the mesh had no cap) still count in the check before a
-- slot is taken.
--
-- attach_presence now locks only its member's row (FOR NO KEY UPDATE:
-- reattach, session-id dedup and the per-member cap stay serialized per
-- member) and shares the mesh row (FOR SHARE: an archive, whose UPDATE of the
-- row conflicts, waits for the attaches in flight, and an attach after it
-- sees archived_at). The per-mesh advisory lock is gone.
ALTER TABLE mesh.presence ADD COLUMN slot integer;
UPDATE mesh.presence p SET slot = r.n - 1
FROM (SELECT id, row_number() OVER (PARTITION BY mesh_id ORDER BY connected_at, id) AS n
	FROM mesh.presence WHERE disconnected_at IS NULL) r
WHERE p.id = r.id;
CREATE UNIQUE INDEX presence_mesh_slot_idx ON mesh.presence (mesh_id, slot) WHERE disconnected_at IS NULL;

DROP FUNCTION mesh.attach_presence(bigint, text, text, text, text, text, text, integer, text, jsonb, text, text,
	text, text, text, text, text, jsonb, boolean, boolean, integer, integer, boolean, float8);

CREATE FUNCTION mesh.attach_presence(
	p_id text, p_mesh_id text, p_member_id text, p_session_id text, p_session_pubkey text,
	p_display_name text, p_pid integer, p_cwd text, p_groups jsonb, p_role text, p_node_id text,
	p_socket_id text, p_hostname text, p_peer_type text, p_channel text, p_model text, p_profile jsonb,
	p_ephemeral boolean, p_take_over boolean, p_max_mesh integer, p_max_member integer,
	p_privileged boolean, p_pending_secs float8)
RETURNS TABLE (
	kind text, old_socket_id text, old_node_id text,
	id text, mesh_id text, member_id text, member_pubkey text, session_id text, session_pubkey text,
	display_name text, pid integer, cwd text, status text, status_source text,
	status_updated_at timestamptz, summary text, groups jsonb, role text, node_id text, socket_id text,
	hostname text, peer_type text, channel text, model text,
	visible boolean, profile jsonb, connected_at timestamptz, last_ping_at timestamptz,
	lease_until timestamptz, disconnected_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
	v_archived boolean;
	v_old_id text;
	v_old_socket text;
	v_old_node text;
	v_online boolean;
	v_targets text[];
	v_kinds text[] := '{}';
	v_ids text[] := '{}';
	v_socks text[] := '{}';
	v_nodes text[] := '{}';
	v_tmp_ids text[];
	v_tmp_socks text[];
	v_tmp_nodes text[];
	v_n integer;
	v_over integer;
	v_status text;
	v_slot integer;
	v_cand integer;
	v_wait integer;
	v_tries integer := 0;
BEGIN
	SELECT ms.archived_at IS NOT NULL INTO v_archived FROM mesh.mesh ms WHERE ms.id = p_mesh_id FOR SHARE;
	IF NOT FOUND OR v_archived THEN
		RAISE EXCEPTION 'mesh archived' USING ERRCODE = 'MS001';
	END IF;
	PERFORM 1 FROM mesh.member mb WHERE mb.id = p_member_id FOR NO KEY UPDATE;

	-- Reattach: the member's live presence with this session (pubkey, else
	-- id); an online one only for session_hello (p_take_over).
	SELECT p.id, p.socket_id, p.node_id, p.lease_until IS NULL,
		mesh.claim_targets(m.peer_pubkey, p.session_pubkey, p.groups)
	INTO v_old_id, v_old_socket, v_old_node, v_online, v_targets
	FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id
	WHERE p.mesh_id = p_mesh_id AND p.member_id = p_member_id
		AND CASE WHEN p_session_pubkey IS NOT NULL THEN p.session_pubkey = p_session_pubkey
			ELSE p.session_pubkey IS NULL AND p.session_id = p_session_id END
		AND p.disconnected_at IS NULL AND (p_take_over OR p.lease_until IS NOT NULL)
	ORDER BY p.connected_at DESC, p.id DESC
	LIMIT 1
	FOR UPDATE OF p;
	IF FOUND THEN
		UPDATE mesh.presence p SET node_id = p_node_id, socket_id = p_socket_id, cwd = p_cwd,
			display_name = COALESCE(NULLIF(p_display_name, ''), p.display_name), session_id = p_session_id,
			lease_until = NULL, last_ping_at = now()
		WHERE p.id = v_old_id;
		-- Rows the old socket claimed are claimable again at once (A.3-5),
		-- read through the pending target index as the claim reads them
		-- (claim_id has no index, migration 0020).
		UPDATE mesh.message_queue q SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
		WHERE q.mesh_id = p_mesh_id AND q.target_spec = ANY (v_targets) AND q.delivered_at IS NULL
			AND q.claim_id = v_old_socket;
		v_kinds := v_kinds || 'reattached'::text; v_ids := v_ids || v_old_id;
		v_socks := v_socks || ''::text; v_nodes := v_nodes || ''::text;
		IF v_online AND v_old_socket <> p_socket_id THEN
			v_kinds := v_kinds || 'replaced'::text; v_ids := v_ids || v_old_id;
			v_socks := v_socks || v_old_socket; v_nodes := v_nodes || v_old_node;
		END IF;
	ELSE
		-- Dedup (B.2 step 5): the member's other live presences with this
		-- session id end without a lease (no peer_left).
		IF p_session_id <> '' THEN
			WITH d AS (
				UPDATE mesh.presence p SET disconnected_at = now()
				WHERE p.mesh_id = p_mesh_id AND p.member_id = p_member_id AND p.session_id = p_session_id
					AND p.disconnected_at IS NULL
				RETURNING p.id, p.socket_id, p.node_id
			)
			SELECT COALESCE(array_agg(d.id ORDER BY d.id), '{}'), COALESCE(array_agg(d.socket_id ORDER BY d.id), '{}'),
				COALESCE(array_agg(d.node_id ORDER BY d.id), '{}')
			INTO v_tmp_ids, v_tmp_socks, v_tmp_nodes FROM d;
			IF cardinality(v_tmp_ids) > 0 THEN
				-- (a replaced session's key may differ: the mesh's pending rows)
				UPDATE mesh.message_queue q SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
				WHERE q.mesh_id = p_mesh_id AND q.claim_id = ANY (v_tmp_socks) AND q.delivered_at IS NULL;
				v_kinds := v_kinds || array_fill('replaced'::text, ARRAY[cardinality(v_tmp_ids)]);
				v_ids := v_ids || v_tmp_ids; v_socks := v_socks || v_tmp_socks; v_nodes := v_nodes || v_tmp_nodes;
			END IF;
		END IF;

		-- Per-member cap: the member's own oldest grace leases give way.
		IF p_max_member > 0 THEN
			SELECT count(*) INTO v_n FROM mesh.presence p
			WHERE p.mesh_id = p_mesh_id AND p.member_id = p_member_id AND p.disconnected_at IS NULL;
			v_over := v_n - p_max_member + 1;
			IF v_over > 0 THEN
				v_tmp_ids := mesh.evict_oldest_leases(p_mesh_id, p_member_id, v_over);
				v_kinds := v_kinds || array_fill('evicted'::text, ARRAY[cardinality(v_tmp_ids)]);
				v_ids := v_ids || v_tmp_ids;
				v_socks := v_socks || array_fill(''::text, ARRAY[cardinality(v_tmp_ids)]);
				v_nodes := v_nodes || array_fill(''::text, ARRAY[cardinality(v_tmp_ids)]);
				IF cardinality(v_tmp_ids) < v_over THEN
					RAISE EXCEPTION 'member at capacity' USING ERRCODE = 'MS003';
				END IF;
			END IF;
		END IF;

		-- The newest pending hook status of (pid, cwd) in the window becomes
		-- the new row's status (B.6.5); every pending row of the window is used.
		WITH cand AS (
			SELECT ps.id, ps.status, ps.created_at FROM mesh.pending_status ps
			WHERE ps.pid = p_pid AND ps.cwd = p_cwd AND ps.applied_at IS NULL
				AND ps.created_at >= now() - make_interval(secs => p_pending_secs)
			FOR UPDATE SKIP LOCKED
		), used AS (
			UPDATE mesh.pending_status ps SET applied_at = now() FROM cand WHERE ps.id = cand.id
		)
		SELECT cand.status INTO v_status FROM cand ORDER BY cand.created_at DESC, cand.id DESC LIMIT 1;

		-- Per-mesh cap: a free slot, else a grace lease gives way (the
		-- member's own oldest, then for the owner or an admin the mesh's
		-- oldest) and frees one. A hello takes its slot's lock (two-key
		-- advisory lock, held to commit) before inserting: a slot another
		-- hello is taking is skipped, not waited for, so hellos of one mesh
		-- run in parallel; only when every free slot is being taken does it
		-- wait for one and look again. Candidates: four random slots and every
		-- slot in [0, live count] (one is free by pigeonhole, unless a hello
		-- in flight is taking it), then every free slot of the mesh.
		LOOP
			v_slot := NULL;
			v_wait := NULL;
			IF p_max_mesh > 0 THEN
				SELECT count(*) INTO v_n FROM mesh.presence p
				WHERE p.mesh_id = p_mesh_id AND p.disconnected_at IS NULL;
				IF v_n < p_max_mesh THEN
					FOR v_cand IN
						SELECT c.n FROM (
							SELECT floor(random() * p_max_mesh)::integer AS n, 0 AS pass FROM generate_series(1, 4)
							UNION ALL
							SELECT s.n, 1 FROM generate_series(0, v_n) AS s(n)
						) AS c
						WHERE NOT EXISTS (SELECT 1 FROM mesh.presence p
							WHERE p.mesh_id = p_mesh_id AND p.disconnected_at IS NULL AND p.slot = c.n)
						ORDER BY c.pass, random()
					LOOP
						v_wait := COALESCE(v_wait, v_cand);
						IF pg_try_advisory_xact_lock(hashtext('presence-slot:' || p_mesh_id), v_cand) THEN
							v_slot := v_cand;
							EXIT;
						END IF;
					END LOOP;
					-- Hellos in flight (not in the count) hold those: every free slot.
					IF v_slot IS NULL THEN
						FOR v_cand IN
							SELECT s.n FROM generate_series(0, p_max_mesh - 1) AS s(n)
							WHERE NOT EXISTS (SELECT 1 FROM mesh.presence p
								WHERE p.mesh_id = p_mesh_id AND p.disconnected_at IS NULL AND p.slot = s.n)
							ORDER BY random()
						LOOP
							v_wait := COALESCE(v_wait, v_cand);
							IF pg_try_advisory_xact_lock(hashtext('presence-slot:' || p_mesh_id), v_cand) THEN
								v_slot := v_cand;
								EXIT;
							END IF;
						END LOOP;
					END IF;
				END IF;
				IF v_slot IS NULL AND v_wait IS NOT NULL THEN
					PERFORM pg_advisory_xact_lock(hashtext('presence-slot:' || p_mesh_id), v_wait);
					CONTINUE;
				END IF;
				IF v_slot IS NULL THEN
					v_tmp_ids := mesh.evict_oldest_leases(p_mesh_id, p_member_id, 1);
					IF cardinality(v_tmp_ids) = 0 AND p_privileged THEN
						v_tmp_ids := mesh.evict_oldest_leases(p_mesh_id, '', 1);
					END IF;
					IF cardinality(v_tmp_ids) = 0 THEN
						RAISE EXCEPTION 'mesh at capacity' USING ERRCODE = 'MS002';
					END IF;
					v_kinds := v_kinds || 'evicted'::text; v_ids := v_ids || v_tmp_ids;
					v_socks := v_socks || ''::text; v_nodes := v_nodes || ''::text;
					CONTINUE;
				END IF;
			END IF;
			-- A conflict here is a slot committed since the candidates were read.
			INSERT INTO mesh.presence (id, mesh_id, member_id, session_id, session_pubkey, display_name, pid, cwd,
				groups, role, node_id, socket_id, hostname, peer_type, channel, model, profile, ephemeral,
				status, status_source, slot)
			VALUES (p_id, p_mesh_id, p_member_id, p_session_id, p_session_pubkey, p_display_name, p_pid, p_cwd,
				p_groups, COALESCE(p_role, 'session'), p_node_id, p_socket_id, p_hostname, p_peer_type, p_channel,
				p_model, p_profile, p_ephemeral,
				COALESCE(v_status, 'idle'), CASE WHEN v_status IS NULL THEN 'jsonl' ELSE 'hook' END, v_slot)
			ON CONFLICT DO NOTHING;
			EXIT WHEN FOUND;
			v_tries := v_tries + 1;
			IF v_tries > p_max_mesh + 64 THEN -- a safety net; every turn above makes progress
				RAISE EXCEPTION 'mesh at capacity' USING ERRCODE = 'MS002';
			END IF;
		END LOOP;
		v_kinds := v_kinds || 'presence'::text; v_ids := v_ids || p_id;
		v_socks := v_socks || ''::text; v_nodes := v_nodes || ''::text;
	END IF;

	RETURN QUERY
	SELECT x.kind, x.sock, x.node,
		p.id, p.mesh_id, p.member_id, m.peer_pubkey, p.session_id, COALESCE(p.session_pubkey, ''),
		COALESCE(NULLIF(p.display_name, ''), m.display_name), p.pid, p.cwd, p.status, p.status_source,
		p.status_updated_at, COALESCE(p.summary, ''), p.groups, p.role, p.node_id, p.socket_id,
		COALESCE(p.hostname, ''), COALESCE(p.peer_type, ''), COALESCE(p.channel, ''), COALESCE(p.model, ''),
		p.visible, p.profile, p.connected_at, p.last_ping_at, p.lease_until, p.disconnected_at
	FROM unnest(v_kinds, v_ids, v_socks, v_nodes) WITH ORDINALITY AS x(kind, pid_, sock, node, ord)
	JOIN mesh.presence p ON p.id = x.pid_
	JOIN mesh.member m ON m.id = p.member_id
	ORDER BY x.ord;
END
$$;

