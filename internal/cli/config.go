package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/haroll/haroll/agent"
)

// defaultAgentConfig is where the agent's configuration lives on a host.
const defaultAgentConfig = "/etc/haroll/agent.yaml"

// agentFlags adds the flags that override agent configuration keys.
func agentFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("config", defaultAgentConfig, "agent configuration file (YAML)")
	f.String("haproxy-socket", "", "HAProxy runtime API socket (overrides haproxy.socket)")
	f.String("state-dir", "", "state directory (overrides state_dir)")
	f.String("socket", "", "the agent's unix socket (overrides socket)")
}

// agentFlagKeys maps the flags that override agent configuration keys.
var agentFlagKeys = map[string]string{"haproxy-socket": "haproxy.socket", "state-dir": "state_dir", "socket": "socket", "listen": "listen"}

// loadAgentConfig reads the agent configuration from the --config file,
// HAROLL_* environment variables (HAROLL_HAPROXY_SOCKET, HAROLL_DRAIN_TIMEOUT,
// ...) and flags, in rising precedence, then validates it.
func loadAgentConfig(cmd *cobra.Command) (agent.Config, error) {
	return loadConfig(cmd, agent.DefaultConfig(), agentFlagKeys, "configs/agent.yaml", nil)
}

// loadConfig reads a role's configuration: the --config file, HAROLL_*
// environment variables and the flags in flagKeys, in rising precedence;
// adjust (when not nil) then sets what only flags may say, and Validate
// reports every problem. Unknown keys are errors, so a typo does not silently
// fall back to a default.
func loadConfig[T interface{ Validate() error }](cmd *cobra.Command, defaults T, flagKeys map[string]string, example string, adjust func(*T)) (T, error) {
	var cfg T
	v := viper.New()
	v.SetEnvPrefix("HAROLL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	setDefaults(v, "", reflect.ValueOf(defaults))
	for flag, key := range flagKeys {
		f := cmd.Flags().Lookup(flag)
		switch {
		case f == nil || !f.Changed:
		case f.Value.Type() == "stringArray":
			vals, _ := cmd.Flags().GetStringArray(flag)
			v.Set(key, vals)
		default:
			v.Set(key, f.Value.String())
		}
	}
	path, _ := cmd.Flags().GetString("config")
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return cfg, fmt.Errorf("config %s does not exist: pass --config with the YAML file (see %s)", path, example)
		}
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := v.UnmarshalExact(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if adjust != nil {
		adjust(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s is invalid:\n%w", path, err)
	}
	return cfg, nil
}

// setDefaults registers every scalar key of a config struct with viper, so
// that HAROLL_* environment variables reach keys the file does not set.
func setDefaults(v *viper.Viper, prefix string, val reflect.Value) {
	t := val.Type()
	for i := 0; i < t.NumField(); i++ {
		key := t.Field(i).Tag.Get("mapstructure")
		if key == "" || key == "-" {
			continue
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		field := val.Field(i)
		if field.Kind() == reflect.Struct {
			setDefaults(v, key, field)
			continue
		}
		if field.Kind() == reflect.Slice {
			continue // lists come from the file only
		}
		v.SetDefault(key, field.Interface())
	}
}
