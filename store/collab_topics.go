package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// Topics (E.2). Every statement that takes a topic id joins mesh.topic on
// mesh_id, so an id of another mesh behaves as unknown (E.16-3).

const topicCols = `t.id, t.mesh_id, t.name, COALESCE(t.description, ''), t.visibility,
	COALESCE(t.encrypted_key_pubkey, ''), t.created_at, t.archived_at IS NOT NULL`

func topicDest(t *collab.Topic) []any {
	return []any{&t.ID, &t.MeshID, &t.Name, &t.Description, &t.Visibility, &t.EncryptedKeyPubkey, &t.CreatedAt, &t.Archived}
}

// CreateTopic inserts the topic unless its name exists, seals the creator's
// key copy for a new one, and subscribes the creator as lead.
func (s *Store) CreateTopic(ctx context.Context, t *collab.Topic, creatorID string, key *collab.TopicKey) (bool, error) {
	var created bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
INSERT INTO mesh.topic (id, mesh_id, name, description, visibility, created_by_member_id, encrypted_key_pubkey)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (mesh_id, name) DO NOTHING`,
			meshd.NewID(), t.MeshID, t.Name, nullIfEmpty(t.Description), t.Visibility, creatorID, nullIfEmpty(t.EncryptedKeyPubkey))
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		err = tx.QueryRow(ctx, `SELECT `+topicCols+` FROM mesh.topic t WHERE t.mesh_id = $1 AND t.name = $2`, t.MeshID, t.Name).
			Scan(topicDest(t)...)
		if err != nil {
			return err
		}
		if created && key != nil {
			if _, err := tx.Exec(ctx, `
INSERT INTO mesh.topic_member_key (id, topic_id, member_id, encrypted_key, nonce) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (topic_id, member_id) DO UPDATE SET encrypted_key = EXCLUDED.encrypted_key, nonce = EXCLUDED.nonce, rotated_at = now()`,
				meshd.NewID(), t.ID, creatorID, key.EncryptedKey, key.Nonce); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO mesh.topic_member (topic_id, member_id, role) VALUES ($1, $2, 'lead')
ON CONFLICT (topic_id, member_id) DO NOTHING`, t.ID, creatorID)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("create topic: %w", err)
	}
	return created, nil
}

// topicIDShape is E.2.2's rule for trying a reference as an id first.
var topicIDShape = regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`)

// ResolveTopic finds a topic by id (archived included) or by live name.
func (s *Store) ResolveTopic(ctx context.Context, meshID, ref string) (collab.Topic, error) {
	var t collab.Topic
	if topicIDShape.MatchString(ref) {
		err := s.pool.QueryRow(ctx, `SELECT `+topicCols+` FROM mesh.topic t WHERE t.mesh_id = $1 AND t.id = $2`, meshID, ref).
			Scan(topicDest(&t)...)
		if !errors.Is(notFound(err), meshd.ErrNotFound) {
			return t, wrapErr("resolve topic", err)
		}
	}
	err := s.pool.QueryRow(ctx, `SELECT `+topicCols+` FROM mesh.topic t
WHERE t.mesh_id = $1 AND t.name = $2 AND t.archived_at IS NULL`, meshID, ref).Scan(topicDest(&t)...)
	return t, wrapErr("resolve topic", notFound(err))
}

func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ListTopics lists live topics by name with their member counts.
func (s *Store) ListTopics(ctx context.Context, meshID string) ([]collab.Topic, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+topicCols+`,
	(SELECT count(*) FROM mesh.topic_member tm WHERE tm.topic_id = t.id)
FROM mesh.topic t WHERE t.mesh_id = $1 AND t.archived_at IS NULL ORDER BY t.name`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []collab.Topic
	var t collab.Topic
	_, err = pgx.ForEachRow(rows, append(topicDest(&t), &t.MemberCount), func() error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	return out, nil
}

// JoinTopic subscribes memberID; an existing membership keeps its role.
func (s *Store) JoinTopic(ctx context.Context, meshID, topicID, memberID, role string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.topic_member (topic_id, member_id, role)
SELECT t.id, m.id, $4 FROM mesh.topic t JOIN mesh.member m ON m.mesh_id = t.mesh_id
WHERE t.mesh_id = $1 AND t.id = $2 AND m.id = $3
ON CONFLICT (topic_id, member_id) DO NOTHING`, meshID, topicID, memberID, role)
	if err != nil {
		return fmt.Errorf("join topic: %w", err)
	}
	return nil
}

// LeaveTopic unsubscribes memberID.
func (s *Store) LeaveTopic(ctx context.Context, meshID, topicID, memberID string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mesh.topic_member tm USING mesh.topic t
WHERE tm.topic_id = t.id AND t.mesh_id = $1 AND t.id = $2 AND tm.member_id = $3`, meshID, topicID, memberID)
	if err != nil {
		return false, fmt.Errorf("leave topic: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// MarkTopicRead sets last_read_at on memberID's membership.
func (s *Store) MarkTopicRead(ctx context.Context, meshID, topicID, memberID string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE mesh.topic_member tm SET last_read_at = now() FROM mesh.topic t
WHERE tm.topic_id = t.id AND t.mesh_id = $1 AND t.id = $2 AND tm.member_id = $3`, meshID, topicID, memberID)
	if err != nil {
		return false, fmt.Errorf("mark topic read: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// TopicMembers lists the topic's non-revoked members by display name.
func (s *Store) TopicMembers(ctx context.Context, meshID, topicID string) ([]collab.TopicMember, error) {
	rows, err := s.pool.Query(ctx, `
SELECT m.id, m.peer_pubkey, m.display_name, tm.role, tm.joined_at, tm.last_read_at
FROM mesh.topic_member tm JOIN mesh.topic t ON t.id = tm.topic_id JOIN mesh.member m ON m.id = tm.member_id
WHERE t.mesh_id = $1 AND t.id = $2 AND m.revoked_at IS NULL
ORDER BY m.display_name, m.id`, meshID, topicID)
	if err != nil {
		return nil, fmt.Errorf("topic members: %w", err)
	}
	var out []collab.TopicMember
	var m collab.TopicMember
	_, err = pgx.ForEachRow(rows, []any{&m.MemberID, &m.Pubkey, &m.DisplayName, &m.Role, &m.JoinedAt, &m.LastReadAt}, func() error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("topic members: %w", err)
	}
	return out, nil
}

// IsTopicMember reports whether a non-revoked member is subscribed.
func (s *Store) IsTopicMember(ctx context.Context, meshID, topicID, memberID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (
SELECT 1 FROM mesh.topic_member tm JOIN mesh.topic t ON t.id = tm.topic_id JOIN mesh.member m ON m.id = tm.member_id
WHERE t.mesh_id = $1 AND t.id = $2 AND tm.member_id = $3 AND m.revoked_at IS NULL)`, meshID, topicID, memberID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("is topic member: %w", err)
	}
	return ok, nil
}

// TopicHistory returns messages newest first (E.2.3): created_at strictly
// before beforeID's when beforeID is set (an unknown beforeID gives none).
func (s *Store) TopicHistory(ctx context.Context, meshID, topicID string, limit int, beforeID string) ([]collab.TopicMessage, error) {
	rows, err := s.pool.Query(ctx, `
SELECT x.id, x.topic_id, x.sender_member_id, COALESCE(x.sender_session_pubkey, ''),
	COALESCE(x.sender_session_pubkey, m.peer_pubkey), m.display_name, x.nonce, x.ciphertext, x.body_version,
	COALESCE(x.reply_to_id, ''), x.created_at
FROM mesh.topic_message x JOIN mesh.topic t ON t.id = x.topic_id JOIN mesh.member m ON m.id = x.sender_member_id
WHERE t.mesh_id = $1 AND t.id = $2
	AND ($4 = '' OR x.created_at < (SELECT b.created_at FROM mesh.topic_message b WHERE b.id = $4 AND b.topic_id = $2))
ORDER BY x.created_at DESC, x.id DESC LIMIT $3`, meshID, topicID, limit, beforeID)
	if err != nil {
		return nil, fmt.Errorf("topic history: %w", err)
	}
	var out []collab.TopicMessage
	var x collab.TopicMessage
	_, err = pgx.ForEachRow(rows, []any{&x.ID, &x.TopicID, &x.SenderMemberID, &x.SenderSessionPubkey, &x.SenderPubkey,
		&x.SenderName, &x.Nonce, &x.Ciphertext, &x.BodyVersion, &x.ReplyToID, &x.CreatedAt}, func() error {
		out = append(out, x)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("topic history: %w", err)
	}
	return out, nil
}

// AppendTopicMessage records a post in a topic of meshID; a reply_to_id
// outside the topic is dropped (E.2.4 step 2).
func (s *Store) AppendTopicMessage(ctx context.Context, meshID string, m *collab.TopicMessage) error {
	m.ID = meshd.NewID()
	err := s.pool.QueryRow(ctx, `
INSERT INTO mesh.topic_message (id, topic_id, sender_member_id, sender_session_pubkey, nonce, ciphertext, body_version, reply_to_id)
SELECT $1, t.id, $4, $5, $6, $7, $8,
	(SELECT r.id FROM mesh.topic_message r WHERE r.id = $9 AND r.topic_id = t.id)
FROM mesh.topic t WHERE t.mesh_id = $2 AND t.id = $3
RETURNING created_at, COALESCE(reply_to_id, '')`, m.ID, meshID, m.TopicID, m.SenderMemberID,
		nullIfEmpty(m.SenderSessionPubkey), m.Nonce, m.Ciphertext, m.BodyVersion, m.ReplyToID).Scan(&m.CreatedAt, &m.ReplyToID)
	if err != nil {
		return fmt.Errorf("append topic message: %w", notFound(err))
	}
	return nil
}

// TopicMemberKey returns memberID's sealed copy of the topic key.
func (s *Store) TopicMemberKey(ctx context.Context, meshID, topicID, memberID string) (collab.TopicKey, error) {
	var k collab.TopicKey
	err := s.pool.QueryRow(ctx, `SELECT k.encrypted_key, k.nonce, k.created_at
FROM mesh.topic_member_key k JOIN mesh.topic t ON t.id = k.topic_id
WHERE t.mesh_id = $1 AND t.id = $2 AND k.member_id = $3`, meshID, topicID, memberID).Scan(&k.EncryptedKey, &k.Nonce, &k.CreatedAt)
	if err != nil {
		return k, fmt.Errorf("topic member key: %w", notFound(err))
	}
	return k, nil
}
