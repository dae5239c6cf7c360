package apiserver

import (
	"net/http"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// review is a create-only resource that answers a question about the caller
// and stores nothing: `kubectl auth can-i` and `kubectl auth whoami` ask
// these. skiff has no authorization yet (RBAC comes with multi-node): every
// authenticated caller may do everything, and the reviews say so.
type review struct {
	gvr    schema.GroupVersionResource
	kind   string
	new    func() runtime.Object
	answer func(obj runtime.Object, caller authenticationv1.UserInfo) runtime.Object
}

var reviews = []review{
	{
		gvr: authorizationv1.SchemeGroupVersion.WithResource("selfsubjectaccessreviews"), kind: "SelfSubjectAccessReview",
		new: func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} },
		answer: func(obj runtime.Object, _ authenticationv1.UserInfo) runtime.Object {
			r := obj.(*authorizationv1.SelfSubjectAccessReview)
			r.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "skiff authorizes every authenticated user"}
			return r
		},
	},
	{
		gvr: authorizationv1.SchemeGroupVersion.WithResource("selfsubjectrulesreviews"), kind: "SelfSubjectRulesReview",
		new: func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} },
		answer: func(obj runtime.Object, _ authenticationv1.UserInfo) runtime.Object {
			r := obj.(*authorizationv1.SelfSubjectRulesReview)
			r.Status = authorizationv1.SubjectRulesReviewStatus{
				ResourceRules:    []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
				NonResourceRules: []authorizationv1.NonResourceRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}
			return r
		},
	},
	{
		gvr: authenticationv1.SchemeGroupVersion.WithResource("selfsubjectreviews"), kind: "SelfSubjectReview",
		new: func() runtime.Object { return &authenticationv1.SelfSubjectReview{} },
		answer: func(obj runtime.Object, caller authenticationv1.UserInfo) runtime.Object {
			r := obj.(*authenticationv1.SelfSubjectReview)
			r.Status.UserInfo = caller
			return r
		},
	},
}

// reviewsOf lists the reviews served in gv.
func reviewsOf(gv schema.GroupVersion) []review {
	var out []review
	for _, rv := range reviews {
		if rv.gvr.GroupVersion() == gv {
			out = append(out, rv)
		}
	}
	return out
}

// serveReview answers POST /apis/GROUP/VERSION/RESOURCE for a review; it
// reports false when the path names none.
func (s *Server) serveReview(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion, rest []string) bool {
	if len(rest) != 1 {
		return false
	}
	i := slices.IndexFunc(reviews, func(rv review) bool { return rv.gvr == gv.WithResource(rest[0]) })
	if i < 0 {
		return false
	}
	rv := reviews[i]
	if r.Method != http.MethodPost {
		writeError(w, r, methodNotAllowed(rv.gvr.GroupResource(), r.Method))
		return true
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return true
	}
	dec, ok := decoderFor(r.Header.Get("Content-Type"), false)
	if !ok {
		writeError(w, r, errUnknownMedia)
		return true
	}
	obj := rv.new()
	if _, _, err := dec.Decode(body, nil, obj); err != nil {
		writeError(w, r, badRequest("%v", err))
		return true
	}
	caller, _ := s.authenticate(r)
	out := rv.answer(obj, caller)
	out.GetObjectKind().SetGroupVersionKind(gv.WithKind(rv.kind))
	mustMeta(out).SetCreationTimestamp(metav1.Now())
	o := negotiate(r)
	w.Header().Set("Content-Type", o.mediaType)
	w.WriteHeader(http.StatusCreated)
	_ = o.encoder.Encode(out, w)
	return true
}
