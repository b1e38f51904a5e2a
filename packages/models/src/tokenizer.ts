import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { TokenizerError } from './errors.js';

/*
 * Tokenizers come from @huggingface/tokenizers (pure JS, reads tokenizer.json directly and
 * implements the same normalizer / pre-tokenizer / BPE / post-processor pipeline as the Rust
 * library, with no native build), and chat templates from @huggingface/jinja (the Jinja
 * subset HF chat templates use). Both are maintained by Hugging Face next to transformers.js.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export class TextTokenizer {
  private constructor(
    private readonly tok: Tokenizer,
    private readonly template: Template | null,
    private readonly special: { bos: string | null; eos: string | null },
    readonly file: string,
  ) {}

  static load(dir: string): TE.TaskEither<TokenizerError, TextTokenizer> {
    return async () => {
      const tokFile = join(dir, 'tokenizer.json');
      const cfgFile = join(dir, 'tokenizer_config.json');
      const json = await readJson(tokFile, true);
      if (E.isLeft(json)) return json;
      const cfg = await readJson(cfgFile, false);
      if (E.isLeft(cfg)) return cfg;
      const config = (cfg.right ?? {}) as Record<string, unknown>;
      let tok: Tokenizer;
      try {
        tok = new Tokenizer(json.right as object, config);
      } catch (e) {
        return E.left(new TokenizerError(tokFile, `cannot build a tokenizer: ${(e as Error).message}`));
      }
      let template: Template | null = null;
      const raw = pickTemplate(config.chat_template);
      if (raw) {
        try {
          template = new Template(raw);
        } catch (e) {
          return E.left(new TokenizerError(cfgFile, `chat_template does not parse: ${(e as Error).message}`));
        }
      }
      const tokenText = (v: unknown): string | null => (typeof v === 'string' ? v : typeof v === 'object' && v && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : null);
      return E.right(new TextTokenizer(tok, template, { bos: tokenText(config.bos_token), eos: tokenText(config.eos_token) }, tokFile));
    };
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  /** Plain text to ids, adding the special tokens the tokenizer's post-processor adds (e.g. BOS). */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    return this.tok.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  idOf(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Renders the checkpoint's chat template with a generation prompt, as HF apply_chat_template does. */
  renderChat(messages: ChatMessage[]): string {
    if (!this.template) throw new TokenizerError(this.file, 'this checkpoint has no chat_template in tokenizer_config.json');
    try {
      return this.template.render({
        messages,
        add_generation_prompt: true,
        bos_token: this.special.bos ?? '',
        eos_token: this.special.eos ?? '',
      });
    } catch (e) {
      throw new TokenizerError(this.file, `chat template failed to render: ${(e as Error).message}`);
    }
  }

  /** Chat messages to ids: the rendered template already holds the special tokens. */
  encodeChat(messages: ChatMessage[]): number[] {
    return this.encode(this.renderChat(messages), false);
  }
}

function pickTemplate(t: unknown): string | null {
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x && (x as { name?: unknown }).name === 'default') ?? t[0];
    const tpl = (named as { template?: unknown } | undefined)?.template;
    return typeof tpl === 'string' ? tpl : null;
  }
  return null;
}

async function readJson(path: string, required: boolean): Promise<E.Either<TokenizerError, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return E.right(null);
    return E.left(new TokenizerError(path, `cannot read: ${code ?? (e as Error).message}`));
  }
  try {
    return E.right(JSON.parse(text));
  } catch (e) {
    return E.left(new TokenizerError(path, `not valid JSON: ${(e as Error).message}`));
  }
}
