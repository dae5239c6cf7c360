package apiserver

import (
	"mime"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Scheme knows every type the API server reads or writes.
var Scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	// Clients send DeleteOptions as meta.k8s.io/v1 too.
	metav1.AddToGroupVersion(s, metav1.SchemeGroupVersion)
	if err := metav1.AddMetaToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Media types the API server speaks.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

var (
	jsonSerializer       = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{})
	jsonStrictSerializer = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{Strict: true})
	yamlSerializer       = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{Yaml: true})
	yamlStrictSerializer = json.NewSerializerWithOptions(json.DefaultMetaFactory, Scheme, Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	protoSerializer      = protobuf.NewSerializer(Scheme, Scheme)
	protoRawSerializer   = protobuf.NewRawSerializer(Scheme, Scheme)
)

// output is what a client asked to get back.
type output struct {
	mediaType string
	encoder   runtime.Encoder
	table     bool // as=Table
	partial   bool // as=PartialObjectMetadata(List)
}

// negotiate reads the Accept header. Unknown types fall back to JSON, as
// kubectl and client-go always accept JSON.
func negotiate(r *http.Request) output {
	accept := r.Header.Get("Accept")
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		as := params["as"]
		if as != "" {
			if params["g"] != "meta.k8s.io" || (params["v"] != "v1" && params["v"] != "v1beta1") {
				continue
			}
			if as != "Table" && as != "PartialObjectMetadata" && as != "PartialObjectMetadataList" {
				continue
			}
		}
		o := output{table: as == "Table", partial: strings.HasPrefix(as, "PartialObjectMetadata")}
		switch mt {
		case mediaJSON, "*/*", "application/*":
			o.mediaType, o.encoder = mediaJSON, jsonSerializer
		case mediaYAML:
			o.mediaType, o.encoder = mediaYAML, yamlSerializer
		case mediaProtobuf:
			if o.table {
				o.mediaType, o.encoder = mediaJSON, jsonSerializer
			} else {
				o.mediaType, o.encoder = mediaProtobuf, protoSerializer
			}
		default:
			continue
		}
		return o
	}
	return output{mediaType: mediaJSON, encoder: jsonSerializer}
}

// decoderFor returns the decoder for a request body's content type; strict
// decoders report unknown and duplicate fields.
func decoderFor(contentType string, strict bool) (runtime.Decoder, bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return nil, false
	}
	switch mt {
	case mediaJSON, "":
		if strict {
			return jsonStrictSerializer, true
		}
		return jsonSerializer, true
	case mediaYAML, "application/x-yaml", "text/yaml":
		if strict {
			return yamlStrictSerializer, true
		}
		return yamlSerializer, true
	case mediaProtobuf:
		return protoSerializer, true
	}
	return nil, false
}

// decodePlain decodes a request body that is not a stored resource
// (DeleteOptions, Scale, Binding) in whatever format the client sent.
func decodePlain(body []byte, contentType string, gvk schema.GroupVersionKind, into runtime.Object) error {
	dec, ok := decoderFor(contentType, false)
	if !ok {
		return badRequest("unsupported content type %q", contentType)
	}
	if _, _, err := dec.Decode(body, &gvk, into); err != nil {
		return badRequest("%v", err)
	}
	return nil
}
