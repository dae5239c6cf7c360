package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-org/skiff/pkg/storage"
)

// deleteOptionsFrom reads DeleteOptions from the body or the query.
func deleteOptionsFrom(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(body) > 0 {
		if err := decodePlain(body, r.Header.Get("Content-Type"), metav1.SchemeGroupVersion.WithKind("DeleteOptions"), opts); err != nil {
			return nil, err
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, badRequest("invalid gracePeriodSeconds %q", v)
		}
		opts.GracePeriodSeconds = &n
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b := v == "true"
		opts.OrphanDependents = &b
	}
	for _, d := range q["dryRun"] {
		opts.DryRun = append(opts.DryRun, d)
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: Unsupported value: %q: supported values: \"Foreground\", \"Background\", \"Orphan\"", *opts.PropagationPolicy))
		}
	}
	return opts, nil
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, req request) {
	opts, err := deleteOptionsFrom(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out, gone, err := s.deleteObject(r.Context(), req.res, req.namespace, req.name, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if gone && req.res.Kind != "Pod" {
		m := mustMeta(out)
		writeStatus(w, r, metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK, Details: &metav1.StatusDetails{
			Name: m.GetName(), Group: req.res.Group, Kind: req.res.GroupVersionResource.Resource, UID: m.GetUID()}})
		return
	}
	code := http.StatusOK
	if !gone {
		code = http.StatusAccepted
	}
	s.writeResult(w, r, req.res, code, out)
}

// deleteObject deletes at once, or marks the object for deletion when a
// grace period or finalizers must run first. It reports whether the object
// is gone.
func (s *Server) deleteObject(ctx context.Context, res *resource, ns, name string, opts *metav1.DeleteOptions) (runtime.Object, bool, error) {
	key := res.key(ns, name)
	gr := res.groupResource()
	dry := len(opts.DryRun) > 0
	for attempt := 0; attempt < 50; attempt++ {
		kv, err := s.cfg.Store.Get(ctx, key)
		if err != nil {
			return nil, false, toStatusError(err, gr, name)
		}
		cur, err := decoderOf(res)(kv.Value, kv.Revision)
		if err != nil {
			return nil, false, err
		}
		m := mustMeta(cur)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(gr, name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
			}
		}
		obj := cur.DeepCopyObject()
		om := mustMeta(obj)
		grace := gracePeriod(obj, opts)
		finalizers := om.GetFinalizers()
		switch propagation(opts) {
		case metav1.DeletePropagationForeground:
			finalizers = addFinalizer(finalizers, metav1.FinalizerDeleteDependents)
		case metav1.DeletePropagationOrphan:
			finalizers = addFinalizer(finalizers, metav1.FinalizerOrphanDependents)
		}
		if nsObj, ok := obj.(*corev1.Namespace); ok {
			if len(nsObj.Spec.Finalizers) > 0 || len(finalizers) > 0 {
				if nsObj.DeletionTimestamp == nil {
					now := metav1.NewTime(s.now())
					nsObj.DeletionTimestamp = &now
				}
				nsObj.Status.Phase = corev1.NamespaceTerminating
				nsObj.Finalizers = finalizers
				out, err := s.storeMarked(ctx, res, key, kv.Revision, obj, dry)
				if errors.Is(err, storage.ErrConflict) {
					continue
				}
				return out, false, err
			}
		}
		if len(finalizers) > 0 || grace > 0 {
			deadline := metav1.NewTime(s.now().Add(time.Duration(grace) * time.Second))
			if old := om.GetDeletionTimestamp(); old != nil {
				// Already being deleted: a shorter grace period may move the
				// deadline earlier, nothing moves it later.
				if !deadline.Before(old) && len(finalizers) == len(om.GetFinalizers()) {
					return obj, false, nil
				}
				if deadline.Before(old) {
					om.SetDeletionTimestamp(&deadline)
					om.SetDeletionGracePeriodSeconds(&grace)
				}
			} else {
				om.SetDeletionTimestamp(&deadline)
				om.SetDeletionGracePeriodSeconds(&grace)
			}
			om.SetFinalizers(finalizers)
			if len(finalizers) > 0 || grace > 0 {
				out, err := s.storeMarked(ctx, res, key, kv.Revision, obj, dry)
				if errors.Is(err, storage.ErrConflict) {
					continue
				}
				return out, false, err
			}
		}
		if dry {
			return cur, true, nil
		}
		sides, commit := s.release(ctx, res, cur)
		rev, err := s.cfg.Store.Delete(ctx, key, kv.Revision, sides...)
		commit(err == nil)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, false, toStatusError(err, gr, name)
		}
		setRV(cur, rev)
		return cur, true, nil
	}
	return nil, false, apierrors.NewConflict(gr, name, errors.New("too many concurrent updates; try again"))
}

func (s *Server) storeMarked(ctx context.Context, res *resource, key string, rev int64, obj runtime.Object, dry bool) (runtime.Object, error) {
	if dry {
		return obj, nil
	}
	data, err := encodeForStorage(res, obj)
	if err != nil {
		return nil, err
	}
	nrev, err := s.cfg.Store.Update(ctx, key, rev, data)
	if err != nil {
		return nil, err
	}
	setRV(obj, nrev)
	return obj, nil
}

func propagation(opts *metav1.DeleteOptions) metav1.DeletionPropagation {
	if opts.PropagationPolicy != nil {
		return *opts.PropagationPolicy
	}
	if opts.OrphanDependents != nil {
		if *opts.OrphanDependents {
			return metav1.DeletePropagationOrphan
		}
		return metav1.DeletePropagationBackground
	}
	return metav1.DeletePropagationBackground
}

func addFinalizer(list []string, f string) []string {
	for _, x := range list {
		if x == f {
			return list
		}
	}
	return append(append([]string(nil), list...), f)
}

// gracePeriod: only pods bound to a node and still running get one; the
// kubelet finishes their deletion.
func gracePeriod(obj runtime.Object, opts *metav1.DeleteOptions) int64 {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return 0
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0
	}
	if opts.GracePeriodSeconds != nil {
		if *opts.GracePeriodSeconds < 0 {
			return 1
		}
		return *opts.GracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return 30
}

func (s *Server) deleteCollection(w http.ResponseWriter, r *http.Request, req request) {
	opts, err := deleteOptionsFrom(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sel, err := s.parseSelector(req.res, r.URL.Query())
	if err != nil {
		writeError(w, r, err)
		return
	}
	// What exists now, not what the cache has seen so far: an object created
	// just before must go too.
	rev, err := s.cfg.Store.Revision(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	entries, _, err := req.res.cache.List(r.Context(), req.res.listPrefix(req.namespace), rev, sel.matcher(req.res))
	if err != nil {
		writeError(w, r, err)
		return
	}
	var items []runtime.Object
	for _, e := range entries {
		m := mustMeta(e.Object)
		out, _, err := s.deleteObject(r.Context(), req.res, m.GetNamespace(), m.GetName(), opts)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		items = append(items, out)
	}
	list := req.res.NewList()
	_ = meta.SetList(list, items)
	gvk := req.res.GroupVersionKind()
	list.GetObjectKind().SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	s.writeResult(w, r, req.res, http.StatusOK, list)
}
