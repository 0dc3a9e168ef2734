package httpx

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// CORS headers only for listed origins (CORS_ALLOWED_ORIGINS), on every
// method; none at all by default (issue 12 item 1).
func TestCORSOnlyListedOrigins(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })
	tests := []struct {
		name    string
		allowed []string
		method  string
		origin  string
		want    string
		code    int
	}{
		{"default_none", nil, "POST", "https://app.example.com", "", 200},
		{"default_none_preflight", nil, "OPTIONS", "https://app.example.com", "", 204},
		{"listed", []string{"https://app.example.com"}, "POST", "https://app.example.com", "https://app.example.com", 200},
		{"listed_trailing_slash", []string{"https://app.example.com/"}, "OPTIONS", "https://app.example.com", "https://app.example.com", 204},
		{"unlisted", []string{"https://app.example.com"}, "POST", "https://evil.example", "", 200},
		{"no_origin", []string{"https://app.example.com"}, "GET", "", "", 200},
		{"star", []string{"*"}, "POST", "https://any.example", "https://any.example", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/hook/set-status", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			rec := httptest.NewRecorder()
			CORS(ok, tt.allowed...).ServeHTTP(rec, req)
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tt.want || rec.Code != tt.code {
				t.Fatalf("%d Access-Control-Allow-Origin %q, want %d %q", rec.Code, got, tt.code, tt.want)
			}
		})
	}
}
