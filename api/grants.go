package api

import (
	"fmt"
	"net/http"

	"github.com/meshd/meshd"
)

// Grant bounds (issue 12 item 8): keys are member or session pubkeys (64
// lowercase hex), capabilities come from B.7's vocabulary, and one request
// names at most maxGrantEntries keys.
const maxGrantEntries = 256

var knownCaps = map[string]bool{
	"read": true, "dm": true, "broadcast": true, "state-read": true, "state-write": true, "file-read": true,
}

// checkGrants validates a grants patch; on failure it writes 400
// {error:"invalid_grants", reason} and reports false.
func checkGrants(w http.ResponseWriter, g meshd.Grants) bool {
	reason := ""
	if len(g) > maxGrantEntries {
		reason = fmt.Sprintf("at most %d entries per request (got %d)", maxGrantEntries, len(g))
	}
	for key, caps := range g {
		if reason != "" {
			break
		}
		if !isLowerHex64(key) {
			reason = "grant keys must be 64 lowercase hex pubkeys"
			break
		}
		if len(caps) > len(knownCaps) {
			reason = fmt.Sprintf("at most %d capabilities per key", len(knownCaps))
			break
		}
		for _, c := range caps {
			if !knownCaps[c] {
				reason = "unknown capability (known: read, dm, broadcast, state-read, state-write, file-read)"
				break
			}
		}
	}
	if reason == "" {
		return true
	}
	body := errorBody(w, "invalid_grants")
	body["reason"] = reason
	writeJSON(w, http.StatusBadRequest, body)
	return false
}

func isLowerHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
