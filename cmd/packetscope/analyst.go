package main

import (
	"errors"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/packetscope/packetscope/responder"
)

// Defaults of the LLM analyst's flags.
const (
	defaultLLMBaseURL = "https://api.openai.com/v1"
	defaultLLMModel   = "gpt-4o-mini"
)

// analystConfig holds the flags that choose and configure the analyst; the
// responder, `run` and `analyze` share them.
type analystConfig struct {
	analyst     responder.AnalystName
	llmBaseURL  string
	llmModel    string
	llmKeyFile  string
	llmTimeout  time.Duration
	llmFallback bool
}

func (c *analystConfig) addFlags(cmd *kingpin.CmdClause) {
	enumVar(cmd.Flag("analyst", "Who proposes rules: builtin (fingerprint mining) or llm (OpenAI-compatible API)."),
		&c.analyst, responder.AnalystBuiltin, responder.AnalystNames...)
	cmd.Flag("llm.base-url", "OpenAI-compatible API base URL.").Default(defaultLLMBaseURL).StringVar(&c.llmBaseURL)
	cmd.Flag("llm.model", "Model name.").Default(defaultLLMModel).StringVar(&c.llmModel)
	cmd.Flag("llm.api-key-file", "File holding the API key; default: the OPENAI_API_KEY environment variable.").StringVar(&c.llmKeyFile)
	cmd.Flag("llm.timeout", "Longest wait for the model's answer before falling back.").Default(durationDefault(responder.DefaultLLMTimeout)).DurationVar(&c.llmTimeout)
	cmd.Flag("llm.fallback", "Fall back to the builtin analyst when the LLM fails or its answer is rejected.").Default("true").BoolVar(&c.llmFallback)
}

// llmConfig reads the API key (--llm.api-key-file, else OPENAI_API_KEY) and
// returns the LLM analyst's configuration; it is an error to choose the LLM
// without a key.
func (c *analystConfig) llmConfig() (responder.LLMConfig, error) {
	key := os.Getenv("OPENAI_API_KEY")
	if c.llmKeyFile != "" {
		var err error
		if key, err = readSecretFile(c.llmKeyFile, "--llm.api-key-file"); err != nil {
			return responder.LLMConfig{}, err
		}
	}
	if c.analyst == responder.AnalystLLM && key == "" {
		return responder.LLMConfig{}, errors.New("--analyst llm needs an API key: set --llm.api-key-file or OPENAI_API_KEY")
	}
	return responder.LLMConfig{
		BaseURL:           c.llmBaseURL,
		Model:             c.llmModel,
		APIKey:            key,
		Timeout:           c.llmTimeout,
		FallbackToBuiltin: c.llmFallback,
	}, nil
}
