// The widget's languages. Each language is one dictionary module,
// lang-<code>.js, exporting { name, dir, strings }; strings missing from a
// dictionary fall back to English. To add a language, copy lang-en.js to
// lang-<code>.js, translate its strings, and add it to LANGUAGES below
// (web/README.md, "Languages").

import en from './lang-en.js';
import es from './lang-es.js';
import fr from './lang-fr.js';
import de from './lang-de.js';
import ar from './lang-ar.js';

/** LANGUAGES maps a primary language subtag (BCP 47) to its dictionary. */
export const LANGUAGES = { en, es, fr, de, ar };

/**
 * languageOf returns the supported language code a tag asks for, or ''.
 * Only a well-formed tag is looked at; anything else (markup, a script)
 * is ignored and never reaches the page.
 */
export function languageOf(tag) {
  if (typeof tag !== 'string' || tag.length > 35 || !/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/.test(tag)) return '';
  const code = tag.split('-')[0].toLowerCase();
  return Object.hasOwn(LANGUAGES, code) ? code : '';
}

/**
 * pickLanguage chooses the widget's language: the embedding page's
 * data-lang if supported, else the first supported language of the
 * browser's preferences, else English.
 */
export function pickLanguage(requested, preferred = navigator.languages ?? [navigator.language]) {
  const asked = languageOf(requested);
  if (asked) return asked;
  for (const tag of preferred ?? []) {
    const code = languageOf(tag);
    if (code) return code;
  }
  return 'en';
}

/**
 * translator returns t(key, vars) for a language: the string of key, with
 * each {name} replaced by vars[name] (as text: the result is only ever
 * set with textContent).
 */
export function translator(code) {
  const dict = LANGUAGES[code] ?? en;
  return (key, vars = {}) => {
    const s = dict.strings[key] ?? en.strings[key] ?? key;
    return s.replace(/\{(\w+)\}/g, (m, k) => (Object.hasOwn(vars, k) ? String(vars[k]) : m));
  };
}

/** direction is 'rtl' for right-to-left languages, else 'ltr'. */
export function direction(code) {
  return (LANGUAGES[code] ?? en).dir === 'rtl' ? 'rtl' : 'ltr';
}
