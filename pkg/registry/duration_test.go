package registry

import (
	"math/rand"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
)

func TestHumanDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-2 * time.Second, "<invalid>"},
		{-time.Second, "0s"},
		{0, "0s"},
		{5 * time.Second, "5s"},
		{119 * time.Second, "119s"},
		{2 * time.Minute, "2m"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{9*time.Minute + 59*time.Second, "9m59s"},
		{10*time.Minute + 30*time.Second, "10m"},
		{179 * time.Minute, "179m"},
		{3 * time.Hour, "3h"},
		{5*time.Hour + 3*time.Minute, "5h3m"},
		{8*time.Hour + 59*time.Minute, "8h"},
		{47 * time.Hour, "47h"},
		{2*day + 3*time.Hour, "2d3h"},
		{7 * day, "7d"},
		{8*day + 5*time.Hour, "8d"},
		{729 * day, "729d"},
		{3*365*day + 20*day, "3y20d"},
		{4 * 365 * day, "4y"},
		{9*365*day + 100*day, "9y"},
	}
	for _, tt := range tests {
		if got := HumanDuration(tt.d); got != tt.want {
			t.Errorf("HumanDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestHumanDurationMatchesKubernetes compares with apimachinery's formatter,
// which kubectl uses, on random durations across all ranges.
func TestHumanDurationMatchesKubernetes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		// Spread over 1s .. ~10y on a log scale, plus a few negatives.
		d := time.Duration(float64(time.Second) * pow10(rng.Float64()*8.6))
		if i%50 == 0 {
			d = -d / 1000
		}
		if got, want := HumanDuration(d), duration.HumanDuration(d); got != want {
			t.Fatalf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func pow10(x float64) float64 {
	r := 1.0
	for x >= 1 {
		r *= 10
		x--
	}
	return r * (1 + x*9)
}
