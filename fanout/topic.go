package fanout

import (
	"fmt"
	"strings"
	"unicode"
)

// Metric label values for the kind of a topic: its first token when it is
// one the broker uses, "other" otherwise, so a hostile or buggy topic can
// never create a new time series.
const (
	kindMesh     = "mesh"
	kindPeer     = "peer"
	kindPresence = "presence"
	kindStream   = "stream"
	kindOther    = "other"
)

var kinds = []string{kindMesh, kindPeer, kindPresence, kindStream, kindOther}

// kindOf maps topic to its closed metric label.
func kindOf(topic string) string {
	first, _, _ := strings.Cut(topic, ".")
	switch first {
	case kindMesh, kindPeer, kindPresence, kindStream:
		return first
	}
	return kindOther
}

// maxTopicLen bounds a topic so a subject always fits comfortably in the
// server's control line (4 KiB by default): a longer one would make the
// server close our whole connection, not just fail one subscription.
const maxTopicLen = 1024

// validTopic reports whether s is a literal NATS subject: dot-separated,
// non-empty tokens without whitespace, control characters or wildcards.
func validTopic(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadTopic)
	}
	if len(s) > maxTopicLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadTopic, maxTopicLen)
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" {
			return fmt.Errorf("%w: empty token in %q", ErrBadTopic, s)
		}
	}
	for _, r := range s {
		switch {
		case r == '*' || r == '>':
			return fmt.Errorf("%w: wildcard in %q", ErrBadTopic, s)
		case unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Errorf("%w: whitespace or control character in %q", ErrBadTopic, s)
		}
	}
	return nil
}
