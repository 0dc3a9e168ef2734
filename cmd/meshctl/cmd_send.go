package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

var hex64 = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// runSend sends one message. A display name is resolved to the peer's
// pubkey through peers_list; direct messages are sealed for the recipient
// with crypto_box by the client package (B.12), `*`, `@all` and `@group`
// go out as broadcasts.
func runSend(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	prio := fs.String("priority", "next", "now (even to busy peers), next or low")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	replyTo := fs.String("reply-to", "", "the message id this message answers (the recipient sees it as replyToId)")
	return func(pos []string) error {
		usage := commands()["send"].usage
		if len(pos) < 2 {
			return usagef(usage, "send needs a target and a message")
		}
		if !meshd.Priority(*prio).Valid() {
			return usagef(usage, "--priority must be now, next or low")
		}
		text, err := c.messageText(pos[1:])
		if err != nil {
			return err
		}
		id, s, err := c.connectMesh(*mesh, "cli", false)
		if err != nil {
			return err
		}
		spec, label, ack, err := c.sendOn(s, pos[0], meshd.Priority(*prio), text, *replyTo)
		got := c.closeCollect(s)
		if err != nil {
			c.showReceived(id.Slug, got)
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"ok": true, "messageId": ack.MessageID, "target": spec, "to": label,
				"encrypted": hex64.MatchString(spec), "received": receivedLines(id.Slug, got)})
		}
		kind := "broadcast"
		if hex64.MatchString(spec) {
			kind = "encrypted direct message"
		}
		fmt.Fprintf(c.stdout, "Sent %s to %s (message %s).\n", kind, label, ack.MessageID)
		c.showReceived(id.Slug, got)
		return nil
	}
}

// messageText joins the message words; a lone "-" reads stdin.
func (c *cli) messageText(words []string) (string, error) {
	if len(words) == 1 && words[0] == "-" {
		b, err := io.ReadAll(io.LimitReader(c.stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("read message from stdin: %w", err)
		}
		words = []string{strings.TrimRight(string(b), "\n")}
	}
	text := strings.Join(words, " ")
	if strings.TrimSpace(text) == "" {
		return "", usagef(commands()["send"].usage, "the message is empty")
	}
	return text, nil
}

// sendOn resolves the target and sends.
func (c *cli) sendOn(s *session, target string, prio meshd.Priority, text, replyTo string) (spec, label string, ack wire.Ack, err error) {
	if spec, label, err = c.resolveTarget(s, target); err != nil {
		return "", "", ack, err
	}
	if ack, err = s.c.SendReply(c.ctx, spec, prio, []byte(text), replyTo); err != nil {
		return "", "", ack, fmt.Errorf("send to %s: %w", label, err)
	}
	return spec, label, ack, nil
}

// resolveTarget maps a target to a targetSpec and a label for humans:
// pubkeys and broadcast specs pass through, anything else is a display
// name or pubkey prefix looked up among the online peers (matchPeer).
func (c *cli) resolveTarget(s *session, target string) (spec, label string, err error) {
	var peers []wire.Peer
	if target != "*" && !strings.HasPrefix(target, "@") && !strings.HasPrefix(target, "#") && !hex64.MatchString(target) {
		if peers, err = s.c.ListPeers(c.ctx); err != nil {
			return "", "", fmt.Errorf("list peers: %w", err)
		}
	}
	if spec, label, err = matchPeer(peers, s.sid, target); err != nil {
		return "", "", fmt.Errorf("mesh %s: %w (see `meshctl peers`)", s.id.Slug, err)
	}
	return spec, label, nil
}
