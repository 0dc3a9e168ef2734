package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// pushPrinter renders received pushes, for humans or one JSON object per
// line.
type pushPrinter struct {
	w    io.Writer
	mesh string
	json *json.Encoder // nil for human output
	now  func() time.Time
}

func newPushPrinter(w io.Writer, mesh string, asJSON bool) *pushPrinter {
	p := &pushPrinter{w: w, mesh: mesh, now: time.Now}
	if asJSON {
		p.json = json.NewEncoder(w)
	}
	return p
}

// pushLine is the --json form of a message.
type pushLine struct {
	Type         string          `json:"type"` // "message" | "system"
	Mesh         string          `json:"mesh"`
	ID           string          `json:"id,omitempty"`
	From         string          `json:"from,omitempty"`
	FromPubkey   string          `json:"fromPubkey,omitempty"`
	FromMemberID string          `json:"fromMemberId,omitempty"`
	Priority     string          `json:"priority,omitempty"`
	Encrypted    bool            `json:"encrypted"`
	Text         *string         `json:"text,omitempty"`
	Error        string          `json:"error,omitempty"`
	CreatedAt    string          `json:"createdAt,omitempty"`
	ReplyToID    string          `json:"replyToId,omitempty"`
	Topic        string          `json:"topic,omitempty"`
	Event        string          `json:"event,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
}

func (p *pushPrinter) print(m client.Message) {
	if m.System() {
		p.system(m)
		return
	}
	from := m.Push.SenderName
	if from == "" {
		from = short(m.Push.SenderPubkey)
	}
	if p.json != nil {
		_ = p.json.Encode(messageLine(p.mesh, m))
		return
	}
	kind := "broadcast"
	switch {
	case m.Push.Topic != "":
		kind = "#" + m.Push.Topic
	case m.Encrypted:
		kind = "dm"
	}
	text := string(m.Plaintext)
	if m.DecryptErr != nil {
		text = fmt.Sprintf("<cannot decrypt: %v>", m.DecryptErr)
	}
	if m.Push.ReplyToID != "" {
		text += " (reply to " + m.Push.ReplyToID + ")"
	}
	fmt.Fprintf(p.w, "%s [%s] %s: %s\n", p.now().Format("15:04:05"), kind, from, text)
}

// messageLine is the JSON form of a (non-system) message.
func messageLine(mesh string, m client.Message) pushLine {
	l := pushLine{Type: "message", Mesh: mesh, ID: m.Push.MessageID, From: m.Push.SenderName,
		FromPubkey: m.Push.SenderPubkey, FromMemberID: m.Push.SenderMemberID, Priority: m.Push.Priority,
		Encrypted: m.Encrypted, CreatedAt: m.Push.CreatedAt, ReplyToID: m.Push.ReplyToID, Topic: m.Push.Topic}
	if m.DecryptErr != nil {
		l.Error = m.DecryptErr.Error()
	} else {
		t := string(m.Plaintext)
		l.Text = &t
	}
	return l
}

func (p *pushPrinter) system(m client.Message) {
	var ev wire.SystemEvent
	_ = json.Unmarshal(m.Push.EventData, &ev)
	if p.json != nil {
		_ = p.json.Encode(pushLine{Type: "system", Mesh: p.mesh, Event: m.Push.Event, From: ev.DisplayName,
			FromPubkey: ev.Pubkey, CreatedAt: m.Push.CreatedAt, Data: m.Push.EventData})
		return
	}
	who := ev.DisplayName
	if who == "" {
		who = ev.Name
	}
	fmt.Fprintf(p.w, "%s [%s] %s\n", p.now().Format("15:04:05"), m.Push.Event, who)
}
