package broker

import (
	"context"
	"strings"

	"github.com/meshd/meshd/wire"
)

// signatureKeep is how long a used handshake signature stays refused: the
// skew window on either side of the signed timestamp, so a replica whose
// clock disagrees with the first one's by up to the window still refuses it.
const signatureKeep = 2 * wire.HelloSkew

// firstUse is the replay check of A.3-21, run after the signature verified:
// the signature (hex, case folded: the verifier accepts either case) is
// recorded cluster-wide and a second use within signatureKeep closes 1008
// replayed. A hello whose signature does not verify never gets here, so a
// forger cannot burn a signature it has not captured.
func (s *Server) firstUse(ctx context.Context, c *conn, signature string) bool {
	fresh, err := s.cfg.Store.ClaimHelloSignature(ctx, strings.ToLower(signature), signatureKeep)
	if err != nil {
		s.internalError(c, err, "replay check")
		return false
	}
	if !fresh {
		c.reject(wire.ReasonReplayed, "")
		return false
	}
	return true
}
