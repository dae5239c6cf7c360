package openapi

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	openapiv3 "github.com/google/gnostic-models/openapiv3"
	"google.golang.org/protobuf/proto"
)

// Media types of the protobuf documents; the "@" forms are the older names
// that clients still send.
const (
	mimeV2Protobuf       = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
	mimeV2ProtobufLegacy = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
	mimeV3Protobuf       = "application/com.github.proto-openapi.spec.v3.v1.0+protobuf"
	mimeV3ProtobufLegacy = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
)

// ServeHTTP serves /openapi/v2, /openapi/v3 and /openapi/v3/<group path>.
func (d *Documents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD are supported", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case p == "/openapi/v2":
		d.serve(w, r, d.v2, mimeV2Protobuf, mimeV2ProtobufLegacy)
	case p == "/openapi/v3":
		w.Header().Set("Etag", strconv.Quote(d.index.hash))
		w.Header().Set("Content-Type", "application/json")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(d.index.json))
	case strings.HasPrefix(p, "/openapi/v3/"):
		gp := strings.TrimPrefix(p, "/openapi/v3/")
		doc, ok := d.v3[gp]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if hash := r.URL.Query().Get("hash"); hash != "" {
			if hash != doc.hash {
				// A stale link: send the client to the current document.
				http.Redirect(w, r, "/openapi/v3/"+gp+"?hash="+url.QueryEscape(doc.hash), http.StatusMovedPermanently)
				return
			}
			// The hash names this exact content, so it never changes.
			w.Header().Set("Cache-Control", "public, immutable")
			w.Header().Set("Expires", time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat))
		}
		d.serve(w, r, doc, mimeV3Protobuf, mimeV3ProtobufLegacy)
	default:
		http.NotFound(w, r)
	}
}

// serve writes doc as JSON or protobuf, whichever the Accept header prefers.
func (d *Documents) serve(w http.ResponseWriter, r *http.Request, doc *document, pb, pbLegacy string) {
	w.Header().Add("Vary", "Accept")
	body, contentType := []byte(nil), ""
	for _, mt := range acceptable(r.Header.Get("Accept")) {
		switch {
		case mt == pb || mt == pbLegacy:
			data, err := doc.protobuf()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body, contentType = data, pb
		case mt == "application/json" || mt == "application/*" || mt == "*/*":
			body, contentType = doc.json, "application/json"
		default:
			continue
		}
		break
	}
	if contentType == "" {
		http.Error(w, "the OpenAPI document is available as application/json or "+pb, http.StatusNotAcceptable)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Etag", strconv.Quote(doc.hash))
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		// The documents are large (the v2 one is near a megabyte) and
		// compress about tenfold; Kubernetes compresses them too.
		w.Header().Add("Vary", "Accept-Encoding")
		form, plain := &doc.gzJSON, body
		if contentType == pb {
			form = &doc.gzPB
		}
		zipped, err := form.get(func() ([]byte, error) { return gzipBytes(plain) })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		body = zipped
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if c := strings.ToLower(strings.TrimSpace(coding)); c != "gzip" && c != "*" {
			continue
		}
		k, v, _ := strings.Cut(strings.TrimSpace(params), "=")
		if strings.TrimSpace(k) == "q" {
			if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q == 0 {
				return false
			}
		}
		return true
	}
	return false
}

// protobuf returns the document in gnostic's protobuf form, converting it on
// first use.
func (doc *document) protobuf() ([]byte, error) {
	return doc.pb.get(func() ([]byte, error) {
		var m proto.Message
		var err error
		if doc.v3 {
			m, err = openapiv3.ParseDocument(doc.json)
		} else {
			m, err = openapiv2.ParseDocument(doc.json)
		}
		if err != nil {
			return nil, fmt.Errorf("openapi: converting to protobuf: %w", err)
		}
		return proto.Marshal(m)
	})
}

// acceptable returns the media types of an Accept header, most preferred
// first (by q, then by order); no header accepts anything.
func acceptable(header string) []string {
	if strings.TrimSpace(header) == "" {
		return []string{"*/*"}
	}
	type clause struct {
		mt string
		q  float64
	}
	var cs []clause
	for _, part := range strings.Split(header, ",") {
		fields := strings.Split(part, ";")
		c := clause{mt: strings.ToLower(strings.TrimSpace(fields[0])), q: 1}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			if strings.TrimSpace(k) == "q" {
				if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					c.q = q
				}
			}
		}
		if c.mt != "" && c.q > 0 {
			cs = append(cs, c)
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].q > cs[j].q })
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.mt
	}
	return out
}
