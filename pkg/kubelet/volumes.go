package kubelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ErrVolume marks a volume that cannot be set up; the pod's containers wait.
var ErrVolume = errors.New("kubelet: volume setup failed")

var everything = labels.Everything()

// apiObjects reads ConfigMaps and Secrets straight from the API server, so a
// sync always sees the newest data.
type apiObjects struct {
	ctx context.Context
	k   *Kubelet
}

func (o apiObjects) ConfigMap(ns, name string) (*v1.ConfigMap, error) {
	return o.k.client.CoreV1().ConfigMaps(ns).Get(o.ctx, name, metav1.GetOptions{})
}

func (o apiObjects) Secret(ns, name string) (*v1.Secret, error) {
	return o.k.client.CoreV1().Secrets(ns).Get(o.ctx, name, metav1.GetOptions{})
}

func (k *Kubelet) objects(ctx context.Context) objectSource { return apiObjects{ctx, k} }

// volumeDir is where a pod volume lives on the host.
func (k *Kubelet) volumeDir(uid types.UID, vol *v1.Volume) string {
	if vol.HostPath != nil {
		return vol.HostPath.Path
	}
	kind := "kubernetes.io~empty-dir"
	switch {
	case vol.ConfigMap != nil:
		kind = "kubernetes.io~configmap"
	case vol.Secret != nil:
		kind = "kubernetes.io~secret"
	case vol.DownwardAPI != nil:
		kind = "kubernetes.io~downward-api"
	case vol.Projected != nil:
		kind = "kubernetes.io~projected"
	}
	return filepath.Join(k.podDir(uid), "volumes", kind, vol.Name)
}

// volumeFile is one file of a configMap, secret, downwardAPI or projected
// volume.
type volumeFile struct {
	Data []byte
	Mode fs.FileMode
}

// setupVolumes creates or refreshes every volume of the pod.
func (k *Kubelet) setupVolumes(ctx context.Context, pod *v1.Pod) error {
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if err := k.setupVolume(ctx, pod, vol); err != nil {
			return fmt.Errorf("%w: MountVolume.SetUp failed for volume %q: %w", ErrVolume, vol.Name, err)
		}
	}
	return nil
}

func (k *Kubelet) setupVolume(ctx context.Context, pod *v1.Pod, vol *v1.Volume) error {
	dir := k.volumeDir(pod.UID, vol)
	switch {
	case vol.HostPath != nil:
		return checkHostPath(vol.HostPath)
	case vol.EmptyDir != nil:
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		if vol.EmptyDir.Medium == v1.StorageMediumMemory && !isMountPoint(dir) {
			opts := "mode=1777"
			if vol.EmptyDir.SizeLimit != nil && !vol.EmptyDir.SizeLimit.IsZero() {
				opts += ",size=" + strconv.FormatInt(vol.EmptyDir.SizeLimit.Value(), 10)
			}
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
				return fmt.Errorf("mount tmpfs: %w", err)
			}
		}
		return nil
	case vol.ConfigMap != nil || vol.Secret != nil || vol.DownwardAPI != nil || vol.Projected != nil:
		files, err := k.volumeFiles(ctx, pod, vol)
		if err != nil {
			return err
		}
		return writeAtomic(dir, files)
	}
	return fmt.Errorf("volume type not supported by skiff's kubelet (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)")
}

// volumeFiles computes the files of an object-backed volume.
func (k *Kubelet) volumeFiles(ctx context.Context, pod *v1.Pod, vol *v1.Volume) (map[string]volumeFile, error) {
	files := map[string]volumeFile{}
	objs := k.objects(ctx)
	switch {
	case vol.ConfigMap != nil:
		return files, addConfigMap(files, objs, pod.Namespace, &vol.ConfigMap.LocalObjectReference, vol.ConfigMap.Items, vol.ConfigMap.Optional, mode(vol.ConfigMap.DefaultMode, 0o644))
	case vol.Secret != nil:
		return files, addSecret(files, objs, pod.Namespace, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional, mode(vol.Secret.DefaultMode, 0o644))
	case vol.DownwardAPI != nil:
		return files, k.addDownward(files, pod, vol.DownwardAPI.Items, mode(vol.DownwardAPI.DefaultMode, 0o644))
	case vol.Projected != nil:
		def := mode(vol.Projected.DefaultMode, 0o644)
		for _, src := range vol.Projected.Sources {
			var err error
			switch {
			case src.ConfigMap != nil:
				err = addConfigMap(files, objs, pod.Namespace, &src.ConfigMap.LocalObjectReference, src.ConfigMap.Items, src.ConfigMap.Optional, def)
			case src.Secret != nil:
				err = addSecret(files, objs, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def)
			case src.DownwardAPI != nil:
				err = k.addDownward(files, pod, src.DownwardAPI.Items, def)
			case src.ServiceAccountToken != nil:
				var tok string
				if tok, err = k.serviceAccountToken(ctx, pod, src.ServiceAccountToken); err == nil {
					files[src.ServiceAccountToken.Path] = volumeFile{Data: []byte(tok), Mode: def}
				}
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}

func mode(m *int32, def fs.FileMode) fs.FileMode {
	if m == nil {
		return def
	}
	return fs.FileMode(*m)
}

func addItems(files map[string]volumeFile, data map[string][]byte, items []v1.KeyToPath, def fs.FileMode, optional bool, what string) error {
	if len(items) == 0 {
		for key, v := range data {
			files[key] = volumeFile{Data: v, Mode: def}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("configuration key %q not found in %s", it.Key, what)
		}
		files[it.Path] = volumeFile{Data: v, Mode: mode(it.Mode, def)}
	}
	return nil
}

func addConfigMap(files map[string]volumeFile, objs objectSource, ns string, ref *v1.LocalObjectReference, items []v1.KeyToPath, optional *bool, def fs.FileMode) error {
	opt := optional != nil && *optional
	cm, err := objs.ConfigMap(ns, ref.Name)
	if err != nil {
		if opt && apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("configmap %q not found: %w", ref.Name, err)
	}
	data := map[string][]byte{}
	for key, v := range cm.Data {
		data[key] = []byte(v)
	}
	for key, v := range cm.BinaryData {
		data[key] = v
	}
	return addItems(files, data, items, def, opt, "ConfigMap "+ns+"/"+ref.Name)
}

func addSecret(files map[string]volumeFile, objs objectSource, ns, name string, items []v1.KeyToPath, optional *bool, def fs.FileMode) error {
	opt := optional != nil && *optional
	s, err := objs.Secret(ns, name)
	if err != nil {
		if opt && apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("secret %q not found: %w", name, err)
	}
	return addItems(files, s.Data, items, def, opt, "Secret "+ns+"/"+name)
}

func (k *Kubelet) addDownward(files map[string]volumeFile, pod *v1.Pod, items []v1.DownwardAPIVolumeFile, def fs.FileMode) error {
	k.mu.Lock()
	alloc := k.allocatable
	k.mu.Unlock()
	in := envInput{Pod: pod, PodIP: pod.Status.PodIP, HostIP: k.cfg.NodeIP, HostIPs: k.hostIPs, Allocatable: alloc}
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = podField(in, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			in.Container = findContainer(pod, it.ResourceFieldRef.ContainerName)
			if in.Container == nil {
				return fmt.Errorf("downwardAPI: container %q not found", it.ResourceFieldRef.ContainerName)
			}
			v, err = resourceField(in, it.ResourceFieldRef)
		}
		if err != nil {
			return err
		}
		files[it.Path] = volumeFile{Data: []byte(v), Mode: mode(it.Mode, def)}
	}
	return nil
}

// writeAtomic makes dir hold exactly files, switching all at once: the
// files go to a fresh timestamped directory, the "..data" symlink is
// renamed onto it, and each top-level name is a symlink through "..data".
// A reader never sees a mix of old and new files. Nothing is written when
// the content is unchanged.
func writeAtomic(dir string, files map[string]volumeFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dataLink := filepath.Join(dir, "..data")
	old, _ := os.Readlink(dataLink)
	if old != "" && sameFiles(filepath.Join(dir, old), files) {
		return nil
	}
	ts := ".." + time.Now().UTC().Format("2006_01_02_15_04_05.000000000")
	tsDir := filepath.Join(dir, ts)
	for rel, f := range files {
		p := filepath.Join(tsDir, filepath.Clean("/"+rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(tsDir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		return err
	}
	tops := map[string]bool{}
	for rel := range files {
		top := strings.SplitN(filepath.Clean(rel), string(filepath.Separator), 2)[0]
		tops[top] = true
		link := filepath.Join(dir, top)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", top) {
			continue
		}
		os.RemoveAll(link)
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			return err
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == "..data" || name == ts:
		case strings.HasPrefix(name, ".."):
			os.RemoveAll(filepath.Join(dir, name))
		case !tops[name]:
			os.Remove(filepath.Join(dir, name))
		}
	}
	return nil
}

// sameFiles says whether dir already holds exactly files.
func sameFiles(dir string, files map[string]volumeFile) bool {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		f, ok := files[rel]
		if !ok {
			return fs.ErrNotExist
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm() != f.Mode.Perm() {
			return fs.ErrInvalid
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			return fs.ErrInvalid
		}
		n++
		return nil
	})
	return err == nil && n == len(files)
}

func isMountPoint(dir string) bool {
	var a, b syscall.Stat_t
	if syscall.Stat(dir, &a) != nil || syscall.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// checkHostPath applies a hostPath volume's type.
func checkHostPath(hp *v1.HostPathVolumeSource) error {
	t := v1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	info, err := os.Stat(hp.Path)
	switch t {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if err != nil {
			return os.MkdirAll(hp.Path, 0o755)
		}
		if !info.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
		return nil
	case v1.HostPathFileOrCreate:
		if err != nil {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if info.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is a directory, not a file", hp.Path)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s does not exist", hp.Path)
	}
	ok := false
	switch t {
	case v1.HostPathDirectory:
		ok = info.IsDir()
	case v1.HostPathFile:
		ok = info.Mode().IsRegular()
	case v1.HostPathSocket:
		ok = info.Mode()&fs.ModeSocket != 0
	case v1.HostPathCharDev:
		ok = info.Mode()&fs.ModeCharDevice != 0
	case v1.HostPathBlockDev:
		ok = info.Mode()&fs.ModeDevice != 0 && info.Mode()&fs.ModeCharDevice == 0
	}
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", hp.Path, t)
	}
	return nil
}

// containerMounts maps the container's volumeMounts to CRI mounts; env
// expands subPathExpr, as it does command and args.
func (k *Kubelet) containerMounts(pod *v1.Pod, c *v1.Container, env []envVar) ([]*runtimeapi.Mount, error) {
	var out []*runtimeapi.Mount
	for _, m := range c.VolumeMounts {
		var vol *v1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == m.Name {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil {
			return nil, fmt.Errorf("%w: volumeMount %q refers to no volume", ErrVolume, m.Name)
		}
		host := k.volumeDir(pod.UID, vol)
		sub := m.SubPath
		if m.SubPathExpr != "" {
			var err error
			if sub, err = expandSubPath(m.SubPathExpr, env); err != nil {
				return nil, fmt.Errorf("%w: volumeMount %q: %w", ErrVolume, m.Name, err)
			}
		}
		if sub != "" {
			clean := filepath.Clean("/" + sub)
			host = filepath.Join(host, clean)
			if _, err := os.Lstat(host); os.IsNotExist(err) && (vol.EmptyDir != nil || vol.HostPath != nil) {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return nil, err
				}
			}
		}
		ro := m.ReadOnly || vol.ConfigMap != nil || vol.Secret != nil || vol.DownwardAPI != nil || vol.Projected != nil
		out = append(out, &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: host, Readonly: ro, SelinuxRelabel: false})
	}
	return out, nil
}

// expandSubPath expands $(VAR) in a subPathExpr with the container's
// environment; the result must stay inside the volume.
func expandSubPath(expr string, env []envVar) (string, error) {
	p := expandCommand([]string{expr}, env)[0]
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("subPathExpr %q expanded to the absolute path %q; it must be relative", expr, p)
	}
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return "", fmt.Errorf("subPathExpr %q expanded to %q, which must not contain '..'", expr, p)
		}
	}
	return p, nil
}

// teardownVolumes unmounts memory-backed volumes and removes the pod's
// directory.
func (k *Kubelet) teardownVolumes(uid types.UID) {
	k.forgetTokens(uid)
	dir := k.podDir(uid)
	filepath.WalkDir(filepath.Join(dir, "volumes", "kubernetes.io~empty-dir"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && isMountPoint(p) {
			syscall.Unmount(p, syscall.MNT_DETACH)
			return filepath.SkipDir
		}
		return nil
	})
	os.RemoveAll(dir)
}
