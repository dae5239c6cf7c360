package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-org/skiff/pkg/storage"
	"github.com/skiff-org/skiff/pkg/watchcache"
)

var (
	errNotReady = apierrors.NewServiceUnavailable("the API server is starting: caches are not loaded yet")
	errTooLarge = apierrors.NewRequestEntityTooLargeError("limit is 3145728")
)

// toStatusError is the one place that maps internal errors to API errors.
func toStatusError(err error, gr schema.GroupResource, name string) error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return err
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errTooLarge
	case errors.Is(err, storage.ErrNotFound):
		return apierrors.NewNotFound(gr, name)
	case errors.Is(err, storage.ErrExists):
		return apierrors.NewAlreadyExists(gr, name)
	case errors.Is(err, storage.ErrConflict):
		return apierrors.NewConflict(gr, name, errors.New(msgModified))
	case errors.Is(err, storage.ErrCompacted), errors.Is(err, watchcache.ErrGone):
		return apierrors.NewResourceExpired("too old resource version")
	}
	return apierrors.NewInternalError(err)
}

const msgModified = "the object has been modified; please apply your changes to the latest version and try again"

func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var se apierrors.APIStatus
	if !errors.As(toStatusError(err, schema.GroupResource{}, ""), &se) {
		se = apierrors.NewInternalError(err)
	}
	writeStatus(w, r, se.Status())
}

func writeStatus(w http.ResponseWriter, r *http.Request, st metav1.Status) {
	st.APIVersion, st.Kind = "v1", "Status"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	writeObject(w, r, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(code)
	w.Write(b)
}

// writeObject encodes obj as the client asked (JSON, YAML or protobuf).
func writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	o := negotiate(r)
	enc := o.encoder
	if _, isStatus := obj.(*metav1.Status); isStatus && o.mediaType == mediaProtobuf {
		enc = protoSerializer
	}
	b, err := runtime.Encode(enc, obj)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": fmt.Sprintf("encoding response: %v", err)})
		code = http.StatusInternalServerError
		o.mediaType = mediaJSON
	}
	w.Header().Set("Content-Type", o.mediaType)
	w.WriteHeader(code)
	w.Write(b)
}

// badRequest is a 400 with Kubernetes' wording.
func badRequest(format string, args ...interface{}) error {
	return apierrors.NewBadRequest(fmt.Sprintf(format, args...))
}

func methodNotAllowed(gr schema.GroupResource, verb string) error {
	return apierrors.NewMethodNotSupported(gr, strings.ToLower(verb))
}

type fieldErrorList = field.ErrorList

func fieldInvalid(path string, value interface{}, msg string) *field.Error {
	return field.Invalid(field.NewPath(path), value, msg)
}
