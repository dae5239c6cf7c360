package apiserver

import (
	"net/http"
	"slices"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Discovery: the legacy (unaggregated) documents. Clients that ask for the
// aggregated form get these and fall back, as client-go does.

func notFoundPath(path string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
		Message: "the server could not find the requested resource",
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: metav1.CauseTypeUnexpectedServerResponse, Message: "404 page not found"}}},
	}}
}

func (s *Server) serveCoreVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}},
	})
}

func (s *Server) apiGroup(name string) metav1.APIGroup {
	g := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
	var versions []string
	for gv := range s.byGV {
		if gv.Group == name {
			versions = append(versions, gv.Version)
		}
	}
	for _, rv := range reviews {
		if rv.gvr.Group == name && !slices.Contains(versions, rv.gvr.Version) {
			versions = append(versions, rv.gvr.Version)
		}
	}
	sort.Strings(versions)
	for _, v := range versions {
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: name + "/" + v, Version: v})
	}
	if len(g.Versions) > 0 {
		g.PreferredVersion = g.Versions[0]
	}
	return g
}

func (s *Server) serveGroups(w http.ResponseWriter, r *http.Request) {
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range s.groups {
		if g != "" {
			list.Groups = append(list.Groups, s.apiGroup(g))
		}
	}
	writeJSON(w, http.StatusOK, &list)
}

func (s *Server) serveGroup(w http.ResponseWriter, r *http.Request, name string) {
	g := s.apiGroup(name)
	if len(g.Versions) == 0 {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	writeJSON(w, http.StatusOK, &g)
}

var (
	fullVerbs   = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
	statusVerbs = metav1.Verbs{"get", "patch", "update"}
)

func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, res := range s.byGV[gv] {
		name := res.GroupVersionResource.Resource
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: name, SingularName: res.SingularName, Namespaced: res.Namespaced, Kind: res.Kind,
			Verbs: fullVerbs, ShortNames: res.ShortNames, Categories: res.Categories,
			StorageVersionHash: storageVersionHash(gv.WithKind(res.Kind)),
		})
		for _, sub := range res.subresources() {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: name + "/" + sub.name, Namespaced: res.Namespaced, Kind: sub.kind,
				Group: sub.group, Version: sub.version, Verbs: sub.verbs,
			})
		}
	}
	for _, rv := range reviewsOf(gv) {
		list.APIResources = append(list.APIResources, metav1.APIResource{Name: rv.gvr.Resource, Kind: rv.kind, Verbs: metav1.Verbs{"create"}})
	}
	sort.Slice(list.APIResources, func(i, j int) bool { return list.APIResources[i].Name < list.APIResources[j].Name })
	writeJSON(w, http.StatusOK, &list)
}

type subresourceInfo struct {
	name, kind, group, version string
	verbs                      metav1.Verbs
}

// subresources lists what serveSubresource handles for this resource.
func (r *resource) subresources() []subresourceInfo {
	var out []subresourceInfo
	if r.Status {
		out = append(out, subresourceInfo{name: "status", kind: r.Kind, verbs: statusVerbs})
	}
	if r.Scale != nil {
		out = append(out, subresourceInfo{name: "scale", kind: "Scale", group: "autoscaling", version: "v1", verbs: statusVerbs})
	}
	switch r.GroupVersionResource {
	case podsGVR:
		out = append(out,
			subresourceInfo{name: "binding", kind: "Binding", verbs: metav1.Verbs{"create"}},
			subresourceInfo{name: "log", kind: "Pod", verbs: metav1.Verbs{"get"}},
			subresourceInfo{name: "exec", kind: "PodExecOptions", verbs: metav1.Verbs{"create", "get"}},
			subresourceInfo{name: "attach", kind: "PodAttachOptions", verbs: metav1.Verbs{"create", "get"}},
			subresourceInfo{name: "portforward", kind: "PodPortForwardOptions", verbs: metav1.Verbs{"create", "get"}},
		)
	case namespacesGVR:
		out = append(out, subresourceInfo{name: "finalize", kind: "Namespace", verbs: metav1.Verbs{"update"}})
	case serviceAccountsGVR:
		out = append(out, subresourceInfo{name: "token", kind: "TokenRequest", group: "authentication.k8s.io", version: "v1", verbs: metav1.Verbs{"create"}})
	}
	return out
}

// storageVersionHash is a short stable hash of the stored kind, as clients
// use it only for equality.
func storageVersionHash(gvk schema.GroupVersionKind) string {
	h := uint64(14695981039346656037)
	for _, c := range []byte(gvk.String()) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	out := make([]byte, 11)
	for i := range out {
		out[i] = alphabet[h&63]
		h >>= 6
	}
	return string(out)
}

var (
	podsGVR       = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	servicesGVR   = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	endpointsGVR  = schema.GroupVersionResource{Version: "v1", Resource: "endpoints"}
)
