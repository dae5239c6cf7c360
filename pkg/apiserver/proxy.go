package apiserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var nodesGVR = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

// proxyToKubelet forwards pods/log, exec, attach and portforward to the
// kubelet of the pod's node — the one place where the API server calls a
// component instead of the other way round, as in Kubernetes.
func (s *Server) proxyToKubelet(w http.ResponseWriter, r *http.Request, req request) {
	obj, err := s.getObject(r.Context(), req.res, req.namespace, req.name, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	container := q.Get("container")
	if req.subresource != "portforward" && container == "" {
		switch {
		case len(pod.Spec.Containers) == 1:
			container = pod.Spec.Containers[0].Name
		default:
			names := make([]string, 0, len(pod.Spec.Containers))
			for _, c := range pod.Spec.Containers {
				names = append(names, c.Name)
			}
			writeError(w, r, badRequest("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " ")))
			return
		}
	}
	if req.subresource != "portforward" && !hasContainer(pod, container) {
		writeError(w, r, badRequest("container %s is not valid for pod %s", container, pod.Name))
		return
	}
	if pod.Spec.NodeName == "" {
		writeError(w, r, badRequest("pod %s does not have a host assigned", pod.Name))
		return
	}
	host, err := s.kubeletAddress(r, pod.Spec.NodeName)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var path string
	switch req.subresource {
	case "log":
		path = fmt.Sprintf("/containerLogs/%s/%s/%s", pod.Namespace, pod.Name, container)
		q.Del("container")
	case "exec":
		path = fmt.Sprintf("/exec/%s/%s/%s", pod.Namespace, pod.Name, container)
	case "attach":
		path = fmt.Sprintf("/attach/%s/%s/%s", pod.Namespace, pod.Name, container)
	case "portforward":
		path = fmt.Sprintf("/portForward/%s/%s", pod.Namespace, pod.Name)
	}
	target := &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: q.Encode()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = target
			pr.Out.Host = host
			pr.Out.Header.Del("Authorization")
		},
		Transport:     s.kubeletTransport(),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error dialing the kubelet of node %s: %v", pod.Spec.NodeName, err)))
		},
	}
	rp.ServeHTTP(w, r)
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) kubeletTransport() http.RoundTripper {
	if s.cfg.KubeletTransport != nil {
		return s.cfg.KubeletTransport
	}
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: false}
}

// kubeletAddress is host:port of a node's kubelet from its status.
func (s *Server) kubeletAddress(r *http.Request, node string) (string, error) {
	res := s.lookup(nodesGVR)
	obj, err := s.getObject(r.Context(), res, "", node, "0")
	if err != nil {
		return "", err
	}
	n := obj.(*corev1.Node)
	port := int(n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = 10250
	}
	var addr string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range n.Status.Addresses {
			if a.Type == t && addr == "" {
				addr = a.Address
			}
		}
	}
	if addr == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no address for its kubelet", node))
	}
	return net.JoinHostPort(addr, strconv.Itoa(port)), nil
}
