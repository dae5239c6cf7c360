package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-org/skiff/pkg/watchcache"
)

func (s *Server) get(w http.ResponseWriter, r *http.Request, req request) {
	obj, err := s.getObject(r.Context(), req.res, req.namespace, req.name, r.URL.Query().Get("resourceVersion"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeResult(w, r, req.res, http.StatusOK, obj)
}

// getObject reads from the cache when any version will do, otherwise from
// etcd (a consistent read, as Kubernetes serves resourceVersion "").
func (s *Server) getObject(ctx context.Context, res *resource, ns, name, rv string) (runtime.Object, error) {
	key := res.key(ns, name)
	if rv != "" {
		if e, ok := res.cache.Get(key); ok {
			return e.Object, nil
		}
		return nil, apierrors.NewNotFound(res.groupResource(), name)
	}
	kv, err := s.cfg.Store.Get(ctx, key)
	if err != nil {
		return nil, toStatusError(err, res.groupResource(), name)
	}
	if e, ok := res.cache.Get(key); ok && e.Rev == kv.Revision {
		return e.Object, nil
	}
	return decoderOf(res)(kv.Value, kv.Revision)
}

// selector is a request's label and field selector.
type selector struct {
	labels labels.Selector
	fields fields.Selector
}

func (s *Server) parseSelector(res *resource, q map[string][]string) (selector, error) {
	sel := selector{labels: labels.Everything(), fields: fields.Everything()}
	if v := first(q, "labelSelector"); v != "" {
		l, err := labels.Parse(v)
		if err != nil {
			return sel, badRequest("unable to parse requirement: %v", err)
		}
		sel.labels = l
	}
	if v := first(q, "fieldSelector"); v != "" {
		f, err := fields.ParseSelector(v)
		if err != nil {
			return sel, badRequest("%v", err)
		}
		for _, req := range f.Requirements() {
			if _, ok := res.fieldSet(nil)[req.Field]; !ok && !res.knowsField(req.Field) {
				return sel, badRequest("field label not supported: %s", req.Field)
			}
		}
		sel.fields = f
	}
	return sel, nil
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// fieldSet returns the selectable fields of obj (nil: just the names).
func (r *resource) fieldSet(obj runtime.Object) fields.Set {
	if obj == nil {
		return fields.Set{"metadata.name": "", "metadata.namespace": ""}
	}
	if r.Fields != nil {
		return r.Fields(obj)
	}
	m := mustMeta(obj)
	return fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()}
}

// knowsField reports whether the resource's field function yields name.
func (r *resource) knowsField(name string) bool {
	if r.Fields == nil {
		return false
	}
	_, ok := r.Fields(r.New())[name]
	return ok
}

func (sel selector) empty() bool { return sel.labels.Empty() && sel.fields.Empty() }

func (sel selector) matcher(r *resource) func(runtime.Object) bool {
	if sel.empty() {
		return nil
	}
	return func(obj runtime.Object) bool {
		m := mustMeta(obj)
		if !sel.labels.Matches(labels.Set(m.GetLabels())) {
			return false
		}
		return sel.fields.Empty() || sel.fields.Matches(r.fieldSet(obj))
	}
}

// continueToken is the opaque state of a paged list.
type continueToken struct {
	RV    int64  `json:"rv"`
	Start string `json:"start"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, req request) {
	q := r.URL.Query()
	sel, err := s.parseSelector(req.res, q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit, _ := strconv.ParseInt(q.Get("limit"), 10, 64)
	rv := q.Get("resourceVersion")
	cont := q.Get("continue")
	var items []runtime.Object
	var listRV int64
	var next string
	var remaining *int64
	if cont == "" && (rv != "" || limit <= 0) {
		// Served from the cache: "0" means any version, a number means at
		// least that version, "" with no limit means the latest, which the
		// cache reaches by waiting for etcd's current revision.
		minRev, _ := strconv.ParseInt(rv, 10, 64)
		if rv == "" {
			if minRev, err = s.cfg.Store.Revision(r.Context()); err != nil {
				writeError(w, r, err)
				return
			}
		}
		entries, rev, err := req.res.cache.List(r.Context(), req.res.listPrefix(req.namespace), minRev, sel.matcher(req.res))
		if err != nil {
			writeError(w, r, apierrors.NewTimeoutError(err.Error(), 1))
			return
		}
		listRV = rev
		out := negotiate(r)
		if !out.table && !out.partial && out.mediaType == mediaJSON {
			s.writeJSONList(w, req.res, entries, rev)
			return
		}
		items = make([]runtime.Object, len(entries))
		for i, e := range entries {
			items[i] = e.Object
		}
	} else {
		items, listRV, next, remaining, err = s.listFromStore(r.Context(), req, sel, limit, cont)
		if err != nil {
			writeError(w, r, err)
			return
		}
	}
	list := req.res.NewList()
	if err := meta.SetList(list, items); err != nil {
		writeError(w, r, err)
		return
	}
	lm, _ := meta.ListAccessor(list)
	lm.SetResourceVersion(strconv.FormatInt(listRV, 10))
	lm.SetContinue(next)
	lm.SetRemainingItemCount(remaining)
	gvk := req.res.GroupVersionKind()
	list.GetObjectKind().SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	s.writeResult(w, r, req.res, http.StatusOK, list)
}

// writeJSONList writes a list by joining each object's memoized JSON, so a
// list of thousands of objects costs little more than copying bytes.
func (s *Server) writeJSONList(w http.ResponseWriter, res *resource, entries []*watchcache.Entry, rev int64) {
	var buf bytes.Buffer
	buf.Grow(len(entries) * 1024)
	gv := res.GroupVersion().String()
	fmt.Fprintf(&buf, `{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"},"items":[`, res.Kind+"List", gv, rev)
	for i, e := range entries {
		b, err := e.Encoded("json", encodeJSON)
		if err != nil {
			writeError(w, nil, err)
			return
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(bytes.TrimRight(b, "\n"))
	}
	buf.WriteString("]}\n")
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func encodeJSON(obj runtime.Object) ([]byte, error) { return runtime.Encode(jsonSerializer, obj) }

// listFromStore pages through etcd, filtering as it goes, so that limit counts
// matching objects as Kubernetes does.
func (s *Server) listFromStore(ctx context.Context, req request, sel selector, limit int64, cont string) ([]runtime.Object, int64, string, *int64, error) {
	prefix := req.res.listPrefix(req.namespace)
	var tok continueToken
	if cont != "" {
		b, err := base64.RawURLEncoding.DecodeString(cont)
		if err != nil || json.Unmarshal(b, &tok) != nil || !strings.HasPrefix(tok.Start, prefix) {
			return nil, 0, "", nil, badRequest("continue key is not valid: %s", cont)
		}
	}
	match := sel.matcher(req.res)
	decode := decoderOf(req.res)
	var items []runtime.Object
	start, rev := tok.Start, tok.RV
	for {
		batch := limit - int64(len(items))
		if match != nil && batch < 100 {
			batch = 100
		}
		kvs, r, more, err := s.cfg.Store.List(ctx, prefix, start, rev, batch)
		if err != nil {
			if cont != "" && apierrors.IsResourceExpired(toStatusError(err, req.res.groupResource(), "")) {
				return nil, 0, "", nil, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
			}
			return nil, 0, "", nil, toStatusError(err, req.res.groupResource(), "")
		}
		rev = r
		for i, kv := range kvs {
			obj, err := decode(kv.Value, kv.Revision)
			if err != nil {
				return nil, 0, "", nil, err
			}
			if match == nil || match(obj) {
				items = append(items, obj)
			}
			if int64(len(items)) == limit && (i < len(kvs)-1 || more) {
				b, _ := json.Marshal(continueToken{RV: rev, Start: kv.Key + "\x00"})
				return items, rev, base64.RawURLEncoding.EncodeToString(b), nil, nil
			}
		}
		if !more || len(kvs) == 0 {
			return items, rev, "", nil, nil
		}
		start = kvs[len(kvs)-1].Key + "\x00"
	}
}

// writeResult writes an object or list as the client asked: as is, as a
// Table, or as partial metadata.
func (s *Server) writeResult(w http.ResponseWriter, r *http.Request, res *resource, code int, obj runtime.Object) {
	o := negotiate(r)
	switch {
	case o.table:
		t, err := s.toTable(res, obj, r.URL.Query().Get("includeObject"), true)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, code, t)
	case o.partial:
		writeObject(w, r, code, toPartial(obj))
	default:
		writeObject(w, r, code, obj)
	}
}

func toPartial(obj runtime.Object) runtime.Object {
	if meta.IsListType(obj) {
		items, _ := meta.ExtractList(obj)
		out := &metav1.PartialObjectMetadataList{}
		out.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadataList"))
		if lm, err := meta.ListAccessor(obj); err == nil {
			out.ResourceVersion, out.Continue = lm.GetResourceVersion(), lm.GetContinue()
		}
		for _, it := range items {
			out.Items = append(out.Items, *partialOf(it))
		}
		return out
	}
	return partialOf(obj)
}

func partialOf(obj runtime.Object) *metav1.PartialObjectMetadata {
	p := &metav1.PartialObjectMetadata{}
	p.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
	if v := reflect.ValueOf(obj); v.Kind() == reflect.Pointer && v.Elem().Kind() == reflect.Struct {
		if f := v.Elem().FieldByName("ObjectMeta"); f.IsValid() {
			if om, ok := f.Addr().Interface().(*metav1.ObjectMeta); ok {
				p.ObjectMeta = *om.DeepCopy()
			}
		}
	}
	return p
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request, req request) {
	q := r.URL.Query()
	sel, err := s.parseSelector(req.res, q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rv := q.Get("resourceVersion")
	from, _ := strconv.ParseInt(rv, 10, 64)
	sendInitial := q.Get("sendInitialEvents") == "true"
	initial := rv == "" || rv == "0" || sendInitial
	if sendInitial && q.Get("resourceVersionMatch") != "NotOlderThan" {
		writeError(w, r, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "", nil))
		return
	}
	timeout := time.Duration(30+rand.Intn(30)) * time.Minute
	if t, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && t > 0 {
		timeout = time.Duration(t) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	watcher, startRev, err := req.res.cache.Watch(ctx, watchcache.WatchOptions{
		Prefix:  req.res.listPrefix(req.namespace),
		Match:   sel.matcher(req.res),
		FromRev: from,
		Initial: initial,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := negotiate(r)
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", out.mediaType)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	enc := &watchEncoder{s: s, res: req.res, out: out, includeObject: q.Get("includeObject")}
	initialLeft := 0
	if sendInitial {
		initialLeft = len(watcher.Events()) // the replay is queued before anything else
		if initialLeft == 0 {
			enc.bookmark(w, startRev, true)
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	// Writes are coalesced: a burst of events goes out in a few frames and
	// syscalls instead of one each, at the cost of at most flushEvery of
	// latency; an event after a quiet spell goes out at once.
	const flushEvery = 2 * time.Millisecond
	flushT := time.NewTimer(time.Hour)
	flushT.Stop()
	defer flushT.Stop()
	armed, pending := false, false
	var lastFlush time.Time
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
		pending, lastFlush = false, time.Now()
	}
	lastRev := startRev
	for {
		select {
		case ev, ok := <-watcher.Events():
			if !ok {
				if pending {
					flush()
				}
				return
			}
			if err := enc.event(w, ev); err != nil {
				return
			}
			pending = true
			if ev.Rev > lastRev {
				lastRev = ev.Rev
			}
			if initialLeft > 0 {
				initialLeft--
				if initialLeft == 0 {
					enc.bookmark(w, startRev, true)
				}
			}
			if len(watcher.Events()) == 0 && !armed {
				if time.Since(lastFlush) >= flushEvery {
					flush()
				} else {
					flushT.Reset(flushEvery - time.Since(lastFlush))
					armed = true
				}
			}
		case <-flushT.C:
			armed = false
			if pending {
				flush()
			}
		case <-tick.C:
			if bookmarks {
				if rev := req.res.cache.Revision(); rev > lastRev {
					lastRev = rev
				}
				enc.bookmark(w, lastRev, false)
				if flusher != nil {
					flusher.Flush()
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// watchEncoder writes watch events in the stream format of the media type.
type watchEncoder struct {
	s             *Server
	res           *resource
	out           output
	includeObject string
	sentColumns   bool
}

func (e *watchEncoder) event(w http.ResponseWriter, ev watchcache.Event) error {
	var raw []byte
	var err error
	switch {
	case e.out.table:
		var t *metav1.Table
		t, err = e.s.toTable(e.res, ev.Object.Object, e.includeObject, !e.sentColumns)
		e.sentColumns = true
		if err == nil {
			raw, err = runtime.Encode(jsonSerializer, t)
		}
	case e.out.partial:
		raw, err = runtime.Encode(e.out.encoder, partialOf(ev.Object.Object))
	case e.out.mediaType == mediaProtobuf:
		raw, err = ev.Object.Encoded("proto", func(o runtime.Object) ([]byte, error) { return runtime.Encode(protoSerializer, o) })
	default:
		raw, err = ev.Object.Encoded("json", encodeJSON)
	}
	if err != nil {
		return err
	}
	return e.write(w, ev.Type, raw)
}

func (e *watchEncoder) write(w http.ResponseWriter, typ watch.EventType, raw []byte) error {
	if e.out.mediaType == mediaProtobuf {
		we := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}}
		b, err := we.Marshal()
		if err != nil {
			return err
		}
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"type":"`)
	buf.WriteString(string(typ))
	buf.WriteString(`","object":`)
	buf.Write(bytes.TrimRight(raw, "\n"))
	buf.WriteString("}\n")
	_, err := w.Write(buf.Bytes())
	return err
}

// bookmark tells the client how far the stream has got; the one that ends
// the initial events carries Kubernetes' initial-events-end annotation.
func (e *watchEncoder) bookmark(w http.ResponseWriter, rev int64, initialEnd bool) {
	obj := e.res.New()
	obj.GetObjectKind().SetGroupVersionKind(e.res.GroupVersionKind())
	m := mustMeta(obj)
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	var raw []byte
	var err error
	if e.out.mediaType == mediaProtobuf {
		raw, err = runtime.Encode(protoSerializer, obj)
	} else {
		raw, err = runtime.Encode(jsonSerializer, obj)
	}
	if err == nil {
		e.write(w, watch.Bookmark, raw)
	}
}
