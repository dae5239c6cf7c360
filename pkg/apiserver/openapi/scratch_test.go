package openapi

import (
	"os"
	"testing"
	"time"
)

func TestScratch(t *testing.T) {
	start := time.Now()
	d, err := New(testResources(), "v1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("New: %v v2=%d bytes", time.Since(start), len(d.v2.json))
	os.WriteFile("/tmp/oa_v2.json", d.v2.json, 0o644)
	os.WriteFile("/tmp/oa_v3_apps.json", d.v3["apis/apps/v1"].json, 0o644)
	os.WriteFile("/tmp/oa_v3_core.json", d.v3["api/v1"].json, 0o644)
	os.WriteFile("/tmp/oa_index.json", d.index.json, 0o644)
	start = time.Now()
	_, err = d.v2.protobuf()
	t.Logf("v2 pb: %v %v", time.Since(start), err)
	start = time.Now()
	_, err = d.v3["api/v1"].protobuf()
	t.Logf("v3 pb: %v %v", time.Since(start), err)
}

func TestScratchParts(t *testing.T) {
	start := time.Now()
	lt, err := loadListTypes()
	t.Logf("listtypes first: %v %v %d", time.Since(start), err, len(lt.fields))
	start = time.Now()
	loadListTypes()
	t.Logf("listtypes second: %v", time.Since(start))
	start = time.Now()
	New(testResources(), "v1.33.0")
	t.Logf("New after: %v", time.Since(start))
}
