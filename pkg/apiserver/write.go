package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-org/skiff/pkg/registry"
	"github.com/skiff-org/skiff/pkg/storage"
)

// writeOptions are the query parameters every write takes.
type writeOptions struct {
	dryRun      bool
	manager     string
	validation  string // Strict, Warn or Ignore
	subresource string
	applied     bool // managedFields already set by a server-side apply
}

func optionsFrom(r *http.Request, sub string) (writeOptions, error) {
	q := r.URL.Query()
	o := writeOptions{manager: managerName(q.Get("fieldManager"), r.UserAgent()), subresource: sub, validation: "Warn"}
	for _, d := range q["dryRun"] {
		if d != "All" {
			return o, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("CreateOptions").GroupKind(), "",
				field.ErrorList{field.NotSupported(field.NewPath("dryRun"), d, []string{"All"})})
		}
		o.dryRun = true
	}
	switch v := q.Get("fieldValidation"); v {
	case "":
	case "Strict", "Warn", "Ignore":
		o.validation = v
	default:
		return o, badRequest("fieldValidation parameter unsupported: %s", v)
	}
	return o, nil
}

// readBody reads a request body, mapping an oversized one to 413.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	return b, nil
}

// decodeBody decodes a request body into the resource's type. Unknown or
// duplicate fields fail a Strict request and become warnings otherwise.
func decodeBody(r *http.Request, res *resource, opts writeOptions) (runtime.Object, []string, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, nil, err
	}
	return decodeInto(body, r.Header.Get("Content-Type"), res.New(), res, opts)
}

// errUnknownMedia answers a body in a media type the server does not read.
var errUnknownMedia = &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
	Reason: metav1.StatusReasonUnsupportedMediaType, Message: "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"}}

func decodeInto(body []byte, contentType string, into runtime.Object, res *resource, opts writeOptions) (runtime.Object, []string, error) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, nil, badRequest("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
	}
	dec, ok := decoderFor(contentType, opts.validation != "Ignore")
	if !ok {
		return nil, nil, errUnknownMedia
	}
	want := into.GetObjectKind()
	_ = want
	defaults := reflectGVK(into, res)
	out, gvk, err := dec.Decode(body, &defaults, into)
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) {
			return nil, nil, badRequest("%v", err)
		}
		if opts.validation == "Strict" {
			return nil, nil, badRequest("%s in version %q cannot be handled as a %s: %v", res.Kind, res.Version, res.Kind, err)
		}
		var sde interface{ Errors() []error }
		if errors.As(err, &sde) {
			for _, e := range sde.Errors() {
				warnings = append(warnings, e.Error())
			}
		}
	}
	if reflect.TypeOf(out) != reflect.TypeOf(into) || gvk.GroupVersion() != defaults.GroupVersion() {
		return nil, nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", gvk.GroupVersion(), defaults.GroupVersion())
	}
	out.GetObjectKind().SetGroupVersionKind(defaults)
	return out, warnings, nil
}

func reflectGVK(into runtime.Object, res *resource) (gvk schemaGVK) {
	kinds, _, err := Scheme.ObjectKinds(into)
	if err == nil && len(kinds) > 0 {
		for _, k := range kinds {
			if k.Group == res.Group {
				return k
			}
		}
		return kinds[0]
	}
	return res.GroupVersionKind()
}

func writeWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", msg))
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, req request) {
	opts, err := optionsFrom(r, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	obj, warns, err := decodeBody(r, req.res, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m := mustMeta(obj)
	if req.res.Namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(req.namespace)
		} else if m.GetNamespace() != req.namespace {
			writeError(w, r, badRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
	} else {
		m.SetNamespace("")
	}
	out, err := s.createObject(r.Context(), req.res, obj, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeWarnings(w, warns)
	s.writeResult(w, r, req.res, http.StatusCreated, out)
}

// createObject runs a new object through the resource's strategy and stores it.
func (s *Server) createObject(ctx context.Context, res *resource, obj runtime.Object, opts writeOptions) (runtime.Object, error) {
	m := mustMeta(obj)
	if m.GetResourceVersion() != "" {
		return nil, badRequest("resourceVersion should not be set on objects to be created")
	}
	if res.Namespaced && m.GetNamespace() != "" {
		if err := s.checkNamespace(ctx, m.GetNamespace()); err != nil {
			return nil, err
		}
	}
	generated := m.GetName() == "" && m.GetGenerateName() != ""
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.NewTime(s.now()))
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetSelfLink("")
	if tracksGeneration(res) {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
	if res.Status && res.Kind != "Node" {
		clearStatus(obj)
	}
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	if err := s.admit(ctx, res, obj, nil); err != nil {
		return nil, err
	}
	if res.Default != nil {
		res.Default(obj)
	}
	// managedFields are tracked from an object's first server-side apply on
	// (Kubernetes' skip-non-applied mode): tracking every create costs about
	// half the CPU of a create, and objects that are never applied never
	// need it. Once applied, every later write is tracked.
	for attempt := 0; ; attempt++ {
		if generated {
			m.SetName(generateName(m.GetGenerateName()))
		}
		if err := s.validate(res, obj, nil); err != nil {
			return nil, err
		}
		key := res.key(m.GetNamespace(), m.GetName())
		if _, exists := res.cache.Get(key); exists && !generated {
			// Say AlreadyExists before allocation could report the
			// existing object's own ClusterIP as taken.
			return nil, apierrors.NewAlreadyExists(res.groupResource(), m.GetName())
		}
		sides, commit, err := s.allocate(ctx, res, obj, nil)
		if err != nil {
			if !generated {
				// The cache may not have seen a create that just returned;
				// etcd has, and its answer beats "IP taken".
				if _, gerr := s.cfg.Store.Get(ctx, key); gerr == nil {
					return nil, apierrors.NewAlreadyExists(res.groupResource(), m.GetName())
				}
			}
			return nil, err
		}
		if opts.dryRun {
			commit(false)
			return obj, nil
		}
		data, err := encodeForStorage(res, obj)
		if err != nil {
			commit(false)
			return nil, err
		}
		rev, err := s.cfg.Store.Create(ctx, key, data, sides...)
		commit(err == nil)
		if err != nil {
			if errors.Is(err, storage.ErrExists) && generated && attempt < 5 {
				continue
			}
			return nil, toStatusError(err, res.groupResource(), m.GetName())
		}
		setRV(obj, rev)
		obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
		return obj, nil
	}
}

func generateName(prefix string) string {
	const max = 63 - 5
	if len(prefix) > max {
		prefix = prefix[:max]
	}
	return prefix + rand.String(5)
}

// tracksGeneration: resources whose spec changes move metadata.generation,
// which their controllers echo in status.observedGeneration.
func tracksGeneration(res *resource) bool {
	switch res.Group {
	case "apps", "batch", "policy", "autoscaling":
		return true
	}
	return res.Kind == "ReplicationController" || res.Kind == "Pod" || res.Kind == "PriorityClass"
}

func (s *Server) validate(res *resource, obj, old runtime.Object) error {
	var errs field.ErrorList
	if old == nil {
		errs = registry.ValidateObjectMeta(res.Resource, mustMeta(obj))
	} else {
		errs = registry.ValidateObjectMetaUpdate(res.Resource, mustMeta(obj), mustMeta(old))
	}
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj, old)...)
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(res.GroupVersionKind().GroupKind(), mustMeta(obj).GetName(), errs)
	}
	return nil
}

// checkNamespace refuses writes into a namespace that is missing or going away.
func (s *Server) checkNamespace(ctx context.Context, ns string) error {
	nsRes := s.lookup(namespacesGVR)
	if nsRes == nil {
		return nil
	}
	var obj runtime.Object
	if e, ok := nsRes.cache.Get(nsRes.key("", ns)); ok {
		obj = e.Object
	} else {
		o, err := s.getObject(ctx, nsRes, "", ns, "")
		if err != nil {
			return err
		}
		obj = o
	}
	nsObj, ok := obj.(*corev1.Namespace)
	if ok && (nsObj.DeletionTimestamp != nil || nsObj.Status.Phase == corev1.NamespaceTerminating) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
			Message: fmt.Sprintf("unable to create new content in namespace %s because it is being terminated", ns),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", ns), Field: "metadata.namespace"}}},
		}}
	}
	return nil
}

// mutateFunc returns the desired object given (a private copy of) the stored
// one; cur is nil when the object does not exist.
type mutateFunc func(cur runtime.Object) (runtime.Object, error)

// updateObject is the compare-and-swap loop behind update, patch and the
// subresources. It reports whether the object was created.
func (s *Server) updateObject(ctx context.Context, res *resource, ns, name string, mutate mutateFunc, opts writeOptions, createIfMissing bool) (runtime.Object, bool, error) {
	key := res.key(ns, name)
	gr := res.groupResource()
	useCache := true
	for attempt := 0; attempt < 50; attempt++ {
		var cur runtime.Object
		var curRev int64
		fromCache := false
		if useCache {
			if e, ok := res.cache.Get(key); ok {
				cur, curRev, fromCache = e.Object, e.Rev, true
			}
		}
		useCache = false
		if cur == nil {
			kv, err := s.cfg.Store.Get(ctx, key)
			if errors.Is(err, storage.ErrNotFound) {
				if !createIfMissing || (opts.subresource != "" && opts.subresource != "apply") {
					return nil, false, apierrors.NewNotFound(gr, name)
				}
				obj, err := mutate(nil)
				if err != nil {
					return nil, false, err
				}
				m := mustMeta(obj)
				if m.GetName() != name {
					return nil, false, badRequest("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), name)
				}
				if res.Namespaced {
					m.SetNamespace(ns)
				}
				m.SetResourceVersion("")
				out, err := s.createObject(ctx, res, obj, opts)
				if apierrors.IsAlreadyExists(err) {
					continue
				}
				return out, err == nil, err
			}
			if err != nil {
				return nil, false, toStatusError(err, gr, name)
			}
			if cur, err = decoderOf(res)(kv.Value, kv.Revision); err != nil {
				return nil, false, err
			}
			curRev = kv.Revision
		}
		// Whatever a cached object makes fail (a JSON patch test, an
		// immutable field, a UID precondition) is checked again on etcd's
		// copy before the client hears of it.
		obj, err := mutate(cur.DeepCopyObject())
		if err != nil {
			if fromCache {
				continue
			}
			return nil, false, err
		}
		nm, om := mustMeta(obj), mustMeta(cur)
		pinned := nm.GetResourceVersion() != ""
		if pinned && nm.GetResourceVersion() != om.GetResourceVersion() {
			if fromCache {
				continue // the cache may lag behind the client; ask etcd
			}
			return nil, false, apierrors.NewConflict(gr, name, errors.New(msgModified))
		}
		if nm.GetUID() != "" && nm.GetUID() != om.GetUID() {
			if fromCache {
				continue
			}
			return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", nm.GetUID(), om.GetUID()))
		}
		if nm.GetName() != "" && nm.GetName() != name {
			return nil, false, badRequest("the name of the object (%s) does not match the name on the URL (%s)", nm.GetName(), name)
		}
		if res.Namespaced && nm.GetNamespace() != "" && nm.GetNamespace() != ns {
			return nil, false, badRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		if opts.subresource == "status" {
			// Only status moves; everything else stays as stored.
			st := cur.DeepCopyObject()
			copyStatus(st, obj)
			mustMeta(st).SetManagedFields(nm.GetManagedFields())
			obj, nm = st, mustMeta(st)
		}
		nm.SetName(name)
		nm.SetNamespace(om.GetNamespace())
		nm.SetUID(om.GetUID())
		nm.SetCreationTimestamp(om.GetCreationTimestamp())
		nm.SetDeletionTimestamp(om.GetDeletionTimestamp())
		nm.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
		nm.SetGeneration(om.GetGeneration())
		nm.SetResourceVersion(om.GetResourceVersion())
		nm.SetSelfLink("")
		if res.Status && opts.subresource == "" {
			copyStatus(obj, cur)
		}
		if opts.subresource == "" && res.PrepareForUpdate != nil {
			res.PrepareForUpdate(obj, cur)
		}
		if opts.subresource != "status" && tracksGeneration(res) && !specEqual(obj, cur) {
			nm.SetGeneration(om.GetGeneration() + 1)
		}
		if res.Default != nil {
			res.Default(obj)
		}
		if err := s.validate(res, obj, cur); err != nil {
			if fromCache {
				continue
			}
			return nil, false, err
		}
		if !opts.applied && len(om.GetManagedFields()) > 0 {
			// Only objects already server-side applied are tracked (see createObject).
			fm, err := res.fm()
			if err != nil {
				return nil, false, err
			}
			obj = fm.forSub(opts.subresource).UpdateNoErrors(cur, obj, opts.manager)
			nm = mustMeta(obj)
		}
		obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
		if sameObject(obj, cur) {
			if fromCache {
				// The cache may lag: etcd may hold something else that this
				// write must still replace.
				continue
			}
			return cur, false, nil
		}
		if nm.GetDeletionTimestamp() != nil && len(nm.GetFinalizers()) == 0 && !namespaceHeld(obj) {
			// The last finalizer is gone: the object goes now.
			if opts.dryRun {
				return obj, false, nil
			}
			sides, commit := s.release(ctx, res, cur)
			_, err := s.cfg.Store.Delete(ctx, key, curRev, sides...)
			commit(err == nil)
			if errors.Is(err, storage.ErrConflict) {
				continue
			}
			if err != nil {
				return nil, false, toStatusError(err, gr, name)
			}
			return obj, false, nil
		}
		sides, commit, err := s.allocate(ctx, res, obj, cur)
		if err != nil {
			if fromCache {
				continue
			}
			return nil, false, err
		}
		if opts.dryRun {
			commit(false)
			return obj, false, nil
		}
		data, err := encodeForStorage(res, obj)
		if err != nil {
			commit(false)
			return nil, false, err
		}
		rev, err := s.cfg.Store.Update(ctx, key, curRev, data, sides...)
		commit(err == nil)
		if errors.Is(err, storage.ErrConflict) {
			// Someone wrote in between: try again on the new copy. A request
			// that named a resourceVersion then fails the check above with
			// 409; a patch, which names none, applies to the new copy.
			continue
		}
		if err != nil {
			return nil, false, toStatusError(err, gr, name)
		}
		setRV(obj, rev)
		return obj, false, nil
	}
	return nil, false, apierrors.NewConflict(gr, name, errors.New("too many concurrent updates; try again"))
}

// namespaceHeld: a namespace also waits for its spec.finalizers.
func namespaceHeld(obj runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, req request) {
	s.replace(w, r, req, "")
}

// replace serves PUT on a resource or its status.
func (s *Server) replace(w http.ResponseWriter, r *http.Request, req request, sub string) {
	opts, err := optionsFrom(r, sub)
	if err != nil {
		writeError(w, r, err)
		return
	}
	obj, warns, err := decodeBody(r, req.res, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m := mustMeta(obj)
	if m.GetName() != req.name {
		writeError(w, r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), req.name))
		return
	}
	out, created, err := s.updateObject(r.Context(), req.res, req.namespace, req.name, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	}, opts, sub == "" && createOnUpdate(req.res))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeWarnings(w, warns)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	s.writeResult(w, r, req.res, code, out)
}

// createOnUpdate: resources Kubernetes lets a PUT create.
func createOnUpdate(res *resource) bool {
	switch res.Kind {
	case "Lease", "Event", "Endpoints", "EndpointSlice":
		return true
	}
	return false
}

type schemaGVK = schema.GroupVersionKind
