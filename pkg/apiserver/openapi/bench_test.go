package openapi

import (
	"testing"
	"time"

	"github.com/skiff-org/skiff/pkg/registry"
)

// BenchmarkNew measures building every document for every served resource
// (the protobuf forms are made on first request and not included). client-go's merge schema
// is parsed once per process (the API server's field manager parses it too),
// so it is loaded before the timer starts.
func BenchmarkNew(b *testing.B) {
	if _, err := loadListTypes(); err != nil {
		b.Fatal(err)
	}
	resources := registry.All()
	if len(resources) == 0 {
		resources = testResources()
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := New(resources, "v1.33.0"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/New")
}

// BenchmarkProtobufV2 measures the first protobuf request of /openapi/v2.
func BenchmarkProtobufV2(b *testing.B) {
	resources := registry.All()
	if len(resources) == 0 {
		resources = testResources()
	}
	d, err := New(resources, "v1.33.0")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		doc := &document{json: d.v2.json}
		if _, err := doc.protobuf(); err != nil {
			b.Fatal(err)
		}
	}
}
