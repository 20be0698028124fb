package responder

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/common/config"
)

// agentRequestTimeout bounds one call to an agent.
const agentRequestTimeout = 30 * time.Second

// LoadAgentHTTPConfig reads --agent.http-config-file (Prometheus'
// http_config YAML: authorization with credentials_file, basic_auth,
// tls_config with client certificates, proxy_url); "" is the zero config.
func LoadAgentHTTPConfig(path string) (config.HTTPClientConfig, error) {
	if path == "" {
		return config.HTTPClientConfig{}, nil
	}
	c, _, err := config.LoadHTTPConfigFile(path)
	if err != nil {
		return config.HTTPClientConfig{}, fmt.Errorf("load agent http config %s: %w", path, err)
	}
	return *c, nil
}

// NewAgentHTTPClient builds the client every agent call goes through; token
// (the --agent.token-file shorthand) becomes a bearer authorization when
// hc sets no authorization of its own. Redirects are never followed: the
// credential goes on every request the client sends, and an agent (or
// whatever answers at its address) must not be able to send it elsewhere.
func NewAgentHTTPClient(hc config.HTTPClientConfig, token string) (*http.Client, error) {
	if token != "" {
		if hc.Authorization != nil || hc.BasicAuth != nil || hc.OAuth2 != nil {
			return nil, errors.New("agent credentials given twice: --agent.token-file and the http config's authorization")
		}
		hc.Authorization = &config.Authorization{Type: "Bearer", Credentials: config.Secret(token)}
	}
	hc.FollowRedirects = false
	if err := hc.Validate(); err != nil {
		return nil, fmt.Errorf("check agent http config: %w", err)
	}
	c, err := config.NewClientFromConfig(hc, "packetscope-responder")
	if err != nil {
		return nil, fmt.Errorf("build agent http client: %w", err)
	}
	c.Timeout = agentRequestTimeout
	return c, nil
}

// HTTPClientConfig is Prometheus' http_config, as the responder's agent
// client takes it.
type HTTPClientConfig = config.HTTPClientConfig
