package openapi

import (
	"testing"
	"time"
)

// BenchmarkNew measures building every document. client-go's merge schema
// is parsed once per process (the API server's field manager parses it too),
// so it is loaded before the timer starts.
func BenchmarkNew(b *testing.B) {
	if _, err := loadListTypes(); err != nil {
		b.Fatal(err)
	}
	resources := testResources()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := New(resources, "v1.33.0"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/New")
}
