package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// Patch content types.
const (
	patchJSON      = "application/json-patch+json"
	patchMerge     = "application/merge-patch+json"
	patchStrategic = "application/strategic-merge-patch+json"
	patchApply     = "application/apply-patch+yaml"
	patchApplyCBOR = "application/apply-patch+cbor"
)

func (s *Server) patch(w http.ResponseWriter, r *http.Request, req request) {
	s.patchSub(w, r, req, "")
}

// patchSub serves PATCH of a resource or its status.
func (s *Server) patchSub(w http.ResponseWriter, r *http.Request, req request, sub string) {
	opts, err := optionsFrom(r, sub)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	pt := r.Header.Get("Content-Type")
	if i := indexByte(pt, ';'); i >= 0 {
		pt = pt[:i]
	}
	q := r.URL.Query()
	var warns []string
	var mutate mutateFunc
	switch pt {
	case patchJSON, patchMerge, patchStrategic:
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			if cur == nil {
				return nil, apierrors.NewNotFound(req.res.groupResource(), req.name)
			}
			obj, w, err := applyPatch(req.res, cur, pt, body, opts)
			warns = w
			return obj, err
		}
	case patchApply:
		if q.Get("fieldManager") == "" {
			writeError(w, r, badRequest("PATCH /apply requires fieldManager"))
			return
		}
		patchObj := &unstructured.Unstructured{Object: map[string]interface{}{}}
		if err := yaml.Unmarshal(body, &patchObj.Object); err != nil {
			writeError(w, r, badRequest("error decoding YAML: %v", err))
			return
		}
		force := q.Get("force") == "true"
		opts.applied = true
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			live := cur
			if live == nil {
				live = req.res.New()
				live.GetObjectKind().SetGroupVersionKind(req.res.GroupVersionKind())
			}
			fm, err := req.res.fm()
			if err != nil {
				return nil, err
			}
			out, err := fm.forSub(sub).Apply(live, patchObj, opts.manager, force)
			if err != nil {
				return nil, applyError(err)
			}
			typed, err := toTyped(req.res, out)
			if err != nil {
				return nil, applyError(err)
			}
			return typed, nil
		}
	default:
		writeError(w, r, &apierrors.StatusError{ErrStatus: unsupportedPatch(pt)})
		return
	}
	out, created, err := s.updateObject(r.Context(), req.res, req.namespace, req.name, mutate, opts, pt == patchApply && sub == "")
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

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// applyPatch applies a JSON, merge or strategic merge patch to cur.
func applyPatch(res *resource, cur runtime.Object, pt string, patch []byte, opts writeOptions) (runtime.Object, []string, error) {
	curJSON, err := json.Marshal(cur)
	if err != nil {
		return nil, nil, err
	}
	var patched []byte
	switch pt {
	case patchJSON:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, nil, badRequest("%v", err)
		}
		if patched, err = p.Apply(curJSON); err != nil {
			return nil, nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", res.groupResource(), "", err.Error(), 0, false)
		}
	case patchMerge:
		if patched, err = jsonpatch.MergePatch(curJSON, patch); err != nil {
			return nil, nil, badRequest("%v", err)
		}
	case patchStrategic:
		if patched, err = strategicMerge(curJSON, patch, res.New()); err != nil {
			return nil, nil, err
		}
	}
	return decodeInto(patched, mediaJSON, res.New(), res, opts)
}

// strategicMerge applies a strategic merge patch; a patch it cannot apply is
// a 400. The library panics on some malformed patches (a list where a merge
// key's scalar belongs compares uncomparable values); the fault is in the
// request, so that is a 400 too rather than a 500.
func strategicMerge(doc, patch []byte, t interface{}) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, badRequest("invalid strategic merge patch: %v", p)
		}
	}()
	out, err = strategicpatch.StrategicMergePatch(doc, patch, t)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	return out, nil
}

// toTyped turns what the field manager returns into the resource's Go type.
func toTyped(res *resource, obj runtime.Object) (runtime.Object, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		out := res.New()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	return obj, nil
}

func unsupportedPatch(pt string) metav1Status {
	return metav1Status{Status: "Failure", Code: http.StatusUnsupportedMediaType, Reason: "UnsupportedMediaType",
		Message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"}
}

type metav1Status = metav1.Status

// patchJSONDoc patches a plain JSON document (such as a Scale) of type t.
func patchJSONDoc(doc []byte, contentType string, patch []byte, t interface{}) ([]byte, error) {
	if i := indexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	switch contentType {
	case patchJSON:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		out, err := p.Apply(doc)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		return out, nil
	case patchMerge, patchApply:
		if contentType == patchApply {
			j, err := yaml.YAMLToJSON(patch)
			if err != nil {
				return nil, badRequest("%v", err)
			}
			patch = j
		}
		out, err := jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		return out, nil
	case patchStrategic:
		return strategicMerge(doc, patch, t)
	}
	return nil, &apierrors.StatusError{ErrStatus: unsupportedPatch(contentType)}
}

// applyError makes an apply that fails on what the client sent (a field of
// the wrong type, duplicate keys in a list map) a 400. Kubernetes answers
// some of these with a 500 today (kubernetes/kubernetes#139253); the cause is
// the request, and a 5xx makes clients retry it. A failure on the stored
// object stays a server error.
func applyError(err error) error {
	if _, ok := err.(apierrors.APIStatus); ok || strings.Contains(err.Error(), "typed live object") {
		return err
	}
	return apierrors.NewBadRequest(err.Error())
}
