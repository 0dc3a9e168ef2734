package fanout

import "testing"

func TestKindOf(t *testing.T) {
	for topic, want := range map[string]string{
		"mesh.m1":       kindMesh,
		"peer.m.k":      kindPeer,
		"presence.p":    kindPresence,
		"stream.m.s":    kindStream,
		"meshy.x":       kindOther,
		"mesh":          kindMesh,
		"anything.else": kindOther,
		"":              kindOther,
	} {
		if got := kindOf(topic); got != want {
			t.Errorf("kindOf(%q) = %q, want %q", topic, got, want)
		}
	}
}

func FuzzValidTopic(f *testing.F) {
	for _, s := range []string{"mesh.m1", "peer.m.k", "mesh.*", "a..b", " "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validTopic(s) != nil {
			return
		}
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '*' || c == '>' || c <= ' ' || c == 0x7f:
				t.Fatalf("accepted %q with byte %q", s, c)
			}
		}
		if s[0] == '.' || s[len(s)-1] == '.' {
			t.Fatalf("accepted %q with an empty token", s)
		}
	})
}
