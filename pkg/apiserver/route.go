package apiserver

import (
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// request is a parsed resource request path.
type request struct {
	res         *resource
	namespace   string
	name        string
	subresource string
	verb        string // get, list, watch, create, update, patch, delete, deletecollection
}

// route dispatches /api and /apis paths.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	parts := splitPath(r.URL.Path)
	var gv schema.GroupVersion
	var rest []string
	switch {
	case len(parts) >= 1 && parts[0] == "api":
		if len(parts) == 1 {
			s.serveCoreVersions(w, r)
			return
		}
		gv = schema.GroupVersion{Version: parts[1]}
		rest = parts[2:]
	case len(parts) >= 1 && parts[0] == "apis":
		switch len(parts) {
		case 1:
			s.serveGroups(w, r)
			return
		case 2:
			s.serveGroup(w, r, parts[1])
			return
		}
		gv = schema.GroupVersion{Group: parts[1], Version: parts[2]}
		rest = parts[3:]
	default:
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	if s.serveReview(w, r, gv, rest) {
		return
	}
	if _, ok := s.byGV[gv]; !ok && len(reviewsOf(gv)) == 0 {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	if len(rest) == 0 {
		s.serveResourceList(w, r, gv)
		return
	}
	req, ok := s.parse(gv, rest)
	if !ok {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	s.serveResource(w, r, req)
}

// parse reads [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]].
func (s *Server) parse(gv schema.GroupVersion, p []string) (request, bool) {
	var req request
	if len(p) >= 3 && p[0] == "namespaces" {
		if res := s.lookup(gv.WithResource(p[2])); res != nil && res.Namespaced {
			req.namespace = p[1]
			p = p[2:]
		}
	}
	req.res = s.lookup(gv.WithResource(p[0]))
	if req.res == nil || len(p) > 3 {
		return req, false
	}
	if len(p) >= 2 {
		req.name = p[1]
	}
	if len(p) == 3 {
		req.subresource = p[2]
	}
	return req, true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// serveResource picks the verb from the method and the path.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, req request) {
	q := r.URL.Query()
	watch := q.Get("watch") == "true" || q.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet:
		switch {
		case req.name == "" && watch:
			req.verb = "watch"
		case req.name == "":
			req.verb = "list"
		default:
			req.verb = "get"
		}
	case http.MethodPost:
		req.verb = "create"
	case http.MethodPut:
		req.verb = "update"
	case http.MethodPatch:
		req.verb = "patch"
	case http.MethodDelete:
		req.verb = "delete"
		if req.name == "" {
			req.verb = "deletecollection"
		}
	default:
		writeError(w, r, methodNotAllowed(req.res.groupResource(), r.Method))
		return
	}
	if req.subresource != "" {
		s.serveSubresource(w, r, req)
		return
	}
	if req.res.Namespaced && req.namespace == "" && req.verb != "list" && req.verb != "watch" {
		writeError(w, r, notFoundPath(r.URL.Path))
		return
	}
	switch req.verb {
	case "get":
		s.get(w, r, req)
	case "list":
		s.list(w, r, req)
	case "watch":
		s.watch(w, r, req)
	case "create":
		if req.name != "" {
			writeError(w, r, methodNotAllowed(req.res.groupResource(), "create"))
			return
		}
		s.create(w, r, req)
	case "update":
		s.update(w, r, req)
	case "patch":
		s.patch(w, r, req)
	case "delete":
		s.delete(w, r, req)
	case "deletecollection":
		s.deleteCollection(w, r, req)
	}
}
