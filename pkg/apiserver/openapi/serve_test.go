package openapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	openapiv3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"
)

func get(d *Documents, path string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	d.ServeHTTP(w, r)
	return w
}

func TestServeV2(t *testing.T) {
	d := testDocuments(t)
	tests := []struct {
		accept      string
		code        int
		contentType string
	}{
		{"", 200, "application/json"},
		{"application/json", 200, "application/json"},
		{"application/json, */*", 200, "application/json"},
		{mimeV2ProtobufLegacy, 200, mimeV2Protobuf},
		{mimeV2Protobuf + ", application/json", 200, mimeV2Protobuf},
		{"application/json;q=0.5, " + mimeV2ProtobufLegacy, 200, mimeV2Protobuf},
		{"text/html", 406, ""},
	}
	for _, tt := range tests {
		w := get(d, "/openapi/v2", map[string]string{"Accept": tt.accept})
		if w.Code != tt.code {
			t.Errorf("GET /openapi/v2 Accept %q: code = %d, want %d", tt.accept, w.Code, tt.code)
			continue
		}
		if tt.code != 200 {
			continue
		}
		if got := w.Header().Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET /openapi/v2 Accept %q: Content-Type = %q, want %q", tt.accept, got, tt.contentType)
		}
		if tt.contentType == "application/json" {
			var s swagger
			if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil || s.Swagger != "2.0" {
				t.Errorf("GET /openapi/v2: body is not Swagger 2.0 JSON (%v)", err)
			}
			continue
		}
		var doc openapiv2.Document
		if err := proto.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			t.Errorf("GET /openapi/v2 protobuf: %v", err)
		} else if doc.GetSwagger() != "2.0" || len(doc.GetDefinitions().GetAdditionalProperties()) < 100 {
			t.Errorf("GET /openapi/v2 protobuf: swagger %q with %d definitions", doc.GetSwagger(), len(doc.GetDefinitions().GetAdditionalProperties()))
		}
	}
}

func TestServeETag(t *testing.T) {
	d := testDocuments(t)
	for _, path := range []string{"/openapi/v2", "/openapi/v3", "/openapi/v3/apis/apps/v1"} {
		w := get(d, path, nil)
		etag := w.Header().Get("Etag")
		if w.Code != 200 || len(etag) != 130 {
			t.Errorf("GET %s: code %d, Etag %q, want 200 and a quoted SHA-512", path, w.Code, etag)
			continue
		}
		if w := get(d, path, map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("GET %s If-None-Match current: code %d, %d bytes, want 304 and none", path, w.Code, w.Body.Len())
		}
		if w := get(d, path, map[string]string{"If-None-Match": `"stale"`}); w.Code != 200 {
			t.Errorf("GET %s If-None-Match stale: code %d, want 200", path, w.Code)
		}
	}
}

func TestServeV3(t *testing.T) {
	d := testDocuments(t)
	w := get(d, "/openapi/v3", nil)
	var idx index3
	if err := json.Unmarshal(w.Body.Bytes(), &idx); err != nil {
		t.Fatalf("GET /openapi/v3: %v", err)
	}
	if len(idx.Paths) != 2 {
		t.Errorf("index paths = %v, want api/v1 and apis/apps/v1", idx.Paths)
	}
	url := idx.Paths["apis/apps/v1"].ServerRelativeURL
	if !strings.HasPrefix(url, "/openapi/v3/apis/apps/v1?hash=") {
		t.Fatalf("serverRelativeURL = %q", url)
	}

	w = get(d, url, nil)
	if w.Code != 200 || w.Header().Get("Cache-Control") != "public, immutable" || w.Header().Get("Expires") == "" {
		t.Errorf("GET %s: code %d, Cache-Control %q, Expires %q; want 200, public, immutable and a date",
			url, w.Code, w.Header().Get("Cache-Control"), w.Header().Get("Expires"))
	}
	var o openAPI3
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil || o.OpenAPI != "3.0.0" {
		t.Errorf("GET %s: not an OpenAPI 3.0 document (%v)", url, err)
	}

	w = get(d, "/openapi/v3/apis/apps/v1", nil)
	if w.Code != 200 || w.Header().Get("Cache-Control") != "" {
		t.Errorf("GET without hash: code %d, Cache-Control %q; want 200 and none", w.Code, w.Header().Get("Cache-Control"))
	}

	w = get(d, "/openapi/v3/apis/apps/v1?hash=OLD", nil)
	if w.Code != http.StatusMovedPermanently || w.Header().Get("Location") != url {
		t.Errorf("GET with a stale hash: code %d, Location %q; want 301 to %q", w.Code, w.Header().Get("Location"), url)
	}

	w = get(d, "/openapi/v3/api/v1", map[string]string{"Accept": mimeV3ProtobufLegacy})
	var doc openapiv3.Document
	if err := proto.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.GetOpenapi() != "3.0.0" {
		t.Errorf("GET /openapi/v3/api/v1 protobuf: %v, openapi %q", err, doc.GetOpenapi())
	}

	for _, path := range []string{"/openapi/v3/apis/batch/v1", "/openapi/v4", "/openapi/v3/apis"} {
		if w := get(d, path, nil); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: code %d, want 404", path, w.Code)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/openapi/v2", nil)
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, r)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /openapi/v2: code %d, want 405", rec.Code)
	}
}

func TestAcceptable(t *testing.T) {
	tests := []struct {
		header string
		want   string
	}{
		{"", "*/*"},
		{"application/json", "application/json"},
		{"a/b;q=0.1, c/d", "c/d a/b"},
		{"a/b, c/d;q=0", "a/b"},
		{"A/B ; q=0.9 , c/d;q=0.9", "a/b c/d"},
	}
	for _, tt := range tests {
		if got := strings.Join(acceptable(tt.header), " "); got != tt.want {
			t.Errorf("acceptable(%q) = %q, want %q", tt.header, got, tt.want)
		}
	}
}

// TestServeConcurrent requests the lazily built protobuf form from many
// goroutines at once; all must get the same bytes.
func TestServeConcurrent(t *testing.T) {
	d, err := New(testResources(), "v1.33.0") // fresh: protobuf not yet built
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	bodies := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = get(d, "/openapi/v2", map[string]string{"Accept": mimeV2ProtobufLegacy}).Body.Bytes()
		}()
	}
	wg.Wait()
	for i := range n {
		if len(bodies[i]) == 0 || !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("concurrent protobuf request %d got %d bytes, want the %d of the first", i, len(bodies[i]), len(bodies[0]))
		}
	}
}

func TestServeGzip(t *testing.T) {
	d := testDocuments(t)
	tests := []struct {
		path, accept, encoding string
		wantGzip               bool
	}{
		{"/openapi/v2", "", "gzip", true},
		{"/openapi/v2", mimeV2ProtobufLegacy, "gzip, deflate", true},
		{"/openapi/v3/api/v1", "", "br;q=1, gzip;q=0.5", true},
		{"/openapi/v2", "", "", false},
		{"/openapi/v2", "", "gzip;q=0", false},
		{"/openapi/v2", "", "identity", false},
	}
	for _, tt := range tests {
		w := get(d, tt.path, map[string]string{"Accept": tt.accept, "Accept-Encoding": tt.encoding})
		gotGzip := w.Header().Get("Content-Encoding") == "gzip"
		if w.Code != 200 || gotGzip != tt.wantGzip {
			t.Errorf("GET %s Accept-Encoding %q: code %d, gzip %v; want 200, gzip %v", tt.path, tt.encoding, w.Code, gotGzip, tt.wantGzip)
			continue
		}
		if !gotGzip {
			continue
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Errorf("GET %s: %v", tt.path, err)
			continue
		}
		plain, err := io.ReadAll(zr)
		want := get(d, tt.path, map[string]string{"Accept": tt.accept}).Body.Bytes()
		if err != nil || !bytes.Equal(plain, want) {
			t.Errorf("GET %s gzip: %d bytes after gunzip (%v), want the %d plain bytes", tt.path, len(plain), err, len(want))
		}
	}
}
