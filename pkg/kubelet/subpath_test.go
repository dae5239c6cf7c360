package kubelet

import (
	"strings"
	"testing"
)

func TestExpandSubPath(t *testing.T) {
	env := []envVar{{"POD_NAME", "web-1"}, {"UP", ".."}, {"ROOT", "/etc"}}
	tests := []struct {
		expr, want, err string
	}{
		{"logs/$(POD_NAME)", "logs/web-1", ""},
		{"$(POD_NAME)", "web-1", ""},
		{"$(UNSET)", "$(UNSET)", ""}, // an unknown variable stays as written, as in command and args
		{"$(UP)/x", "", "must not contain '..'"},
		{"$(ROOT)", "", "must be relative"},
	}
	for _, tt := range tests {
		got, err := expandSubPath(tt.expr, env)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.expr, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %q, %v; want %q", tt.expr, got, err, tt.want)
		}
	}
}
