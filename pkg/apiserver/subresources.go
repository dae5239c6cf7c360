package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// serveSubresource serves status, scale, binding, finalize and the pod
// streams that the kubelet answers.
func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, req request) {
	res := req.res
	switch {
	case req.subresource == "status" && res.Status:
		switch req.verb {
		case "get":
			s.get(w, r, req)
		case "update":
			s.replace(w, r, req, "status")
		case "patch":
			s.patchSub(w, r, req, "status")
		default:
			writeError(w, r, methodNotAllowed(res.groupResource(), req.verb))
		}
	case req.subresource == "scale" && res.Scale != nil:
		s.serveScale(w, r, req)
	case req.subresource == "binding" && res.GroupVersionResource == podsGVR && req.verb == "create":
		s.bind(w, r, req)
	case req.subresource == "finalize" && res.GroupVersionResource == namespacesGVR && req.verb == "update":
		s.finalize(w, r, req)
	case req.subresource == "token" && res.GroupVersionResource == serviceAccountsGVR && req.verb == "create":
		s.requestToken(w, r, req)
	case res.GroupVersionResource == podsGVR && (req.subresource == "log" || req.subresource == "exec" || req.subresource == "attach" || req.subresource == "portforward"):
		s.proxyToKubelet(w, r, req)
	default:
		writeError(w, r, notFoundPath(r.URL.Path))
	}
}

func (s *Server) scaleOf(res *resource, obj runtime.Object) *autoscalingv1.Scale {
	spec, status, sel := res.Scale.Get(obj)
	m := mustMeta(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
		ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
}

func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, req request) {
	res := req.res
	if req.verb == "get" {
		obj, err := s.getObject(r.Context(), res, req.namespace, req.name, "")
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, s.scaleOf(res, obj))
		return
	}
	if req.verb != "update" && req.verb != "patch" {
		writeError(w, r, methodNotAllowed(res.groupResource(), req.verb))
		return
	}
	opts, err := optionsFrom(r, "scale")
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	var result *autoscalingv1.Scale
	out, _, err := s.updateObject(r.Context(), res, req.namespace, req.name, func(cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(res.groupResource(), req.name)
		}
		scale := &autoscalingv1.Scale{}
		if req.verb == "update" {
			if err := decodePlain(body, ct, autoscalingv1.SchemeGroupVersion.WithKind("Scale"), scale); err != nil {
				return nil, err
			}
		} else {
			curScale, _ := json.Marshal(s.scaleOf(res, cur))
			patched, err := patchJSONDoc(curScale, ct, body, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(patched, scale); err != nil {
				return nil, badRequest("%v", err)
			}
		}
		if scale.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), req.name,
				fieldErrors("spec.replicas", scale.Spec.Replicas, "must be greater than or equal to 0"))
		}
		m := mustMeta(cur)
		if scale.ResourceVersion != "" && scale.ResourceVersion != m.GetResourceVersion() {
			return nil, apierrors.NewConflict(res.groupResource(), req.name, fmt.Errorf(msgModified))
		}
		res.Scale.SetReplicas(cur, scale.Spec.Replicas)
		return cur, nil
	}, opts, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	result = s.scaleOf(res, out)
	writeObject(w, r, http.StatusOK, result)
}

func (s *Server) bind(w http.ResponseWriter, r *http.Request, req request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	b := &corev1.Binding{}
	if err := decodePlain(body, r.Header.Get("Content-Type"), corev1.SchemeGroupVersion.WithKind("Binding"), b); err != nil {
		writeError(w, r, err)
		return
	}
	if b.Target.Name == "" {
		writeError(w, r, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), req.name, fieldErrors("target.name", "", "must be set")))
		return
	}
	opts, _ := optionsFrom(r, "binding")
	_, _, err = s.updateObject(r.Context(), req.res, req.namespace, req.name, func(cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(req.res.groupResource(), req.name)
		}
		pod := cur.(*corev1.Pod)
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", b.UID, pod.UID))
		}
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", pod.Name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(req.res.groupResource(), req.name, fmt.Errorf("pod %s is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		pod.Spec.NodeName = b.Target.Name
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(s.now())})
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		return pod, nil
	}, opts, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeStatus(w, r, metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated})
}

func setPodCondition(pod *corev1.Pod, c corev1.PodCondition) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status == c.Status {
				return
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

func (s *Server) finalize(w http.ResponseWriter, r *http.Request, req request) {
	opts, err := optionsFrom(r, "finalize")
	if err != nil {
		writeError(w, r, err)
		return
	}
	obj, _, err := decodeBody(r, req.res, opts)
	if err != nil {
		writeError(w, r, err)
		return
	}
	want := obj.(*corev1.Namespace)
	out, _, err := s.updateObject(r.Context(), req.res, "", req.name, func(cur runtime.Object) (runtime.Object, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(req.res.groupResource(), req.name)
		}
		ns := cur.(*corev1.Namespace)
		ns.Spec.Finalizers = want.Spec.Finalizers
		if want.ResourceVersion != "" {
			ns.ResourceVersion = want.ResourceVersion
		}
		return ns, nil
	}, opts, false)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeResult(w, r, req.res, http.StatusOK, out)
}

func fieldErrors(path string, value interface{}, msg string) fieldErrorList {
	return fieldErrorList{fieldInvalid(path, value, msg)}
}

func parseInt32(s string) int32 {
	n, _ := strconv.ParseInt(s, 10, 32)
	return int32(n)
}
