/**
 * The one way sky writes HTML: the `html` template escapes every value it is given, unless that value
 * is itself Html (made by `html`, or `trusted` for sky's own constant markup). A page cannot forget to
 * escape: data is escaped by default, and markup has to say what it is.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** What a template may interpolate: lists are joined; null, undefined and false render nothing. */
export type HtmlPart = Html | string | number | boolean | null | undefined | readonly HtmlPart[];

/** Escapes the characters that matter in text and in quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function render(part: HtmlPart): string {
  if (part instanceof Html) return part.text;
  if (Array.isArray(part)) return part.map(render).join('');
  if (part === null || part === undefined || part === false) return '';
  return escapeHtml(String(part));
}

export function html(strings: TemplateStringsArray, ...values: readonly HtmlPart[]): Html {
  let text = strings[0] ?? '';
  values.forEach((value, i) => {
    text += render(value) + (strings[i + 1] ?? '');
  });
  return new Html(text);
}

/** sky's own markup written in its source (icons, the style sheet, page scripts): never data. */
export function trusted(text: string): Html {
  return new Html(text);
}
