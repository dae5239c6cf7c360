package kubelet

import (
	"testing"
	"time"
)

func TestTokenFreshness(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	hour := issuedToken{issued: t0, until: t0.Add(time.Hour)}
	year := issuedToken{issued: t0, until: t0.Add(365 * 24 * time.Hour)}
	tests := []struct {
		name string
		tok  issuedToken
		at   time.Time
		want bool
	}{
		{"new", hour, t0, true},
		{"before 80% of its life", hour, t0.Add(47 * time.Minute), true},
		{"past 80% of its life", hour, t0.Add(49 * time.Minute), false},
		{"long-lived, within a day", year, t0.Add(23 * time.Hour), true},
		{"long-lived, after a day", year, t0.Add(25 * time.Hour), false},
	}
	for _, tt := range tests {
		if got := tt.tok.fresh(tt.at); got != tt.want {
			t.Errorf("%s: fresh = %v, want %v", tt.name, got, tt.want)
		}
	}
}
