/* Known-answer tests: every primitive in crypt/backend/cipher.h pinned to
 * published vectors, plus behaviour checks (round trips, tampering). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypt/backend/cipher.h"

/* Decodes hex (whitespace ignored) into out; fails the test on bad input. */
static size_t unhex(const char *hex, uint8_t *out, size_t max)
{
	size_t n = 0;
	int hi = -1;

	for (; *hex; hex++) {
		int v = 0;
		char c = *hex;

		if (c == ' ' || c == '\n')
			continue;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			fail_msg("bad hex character '%c'", c);
		if (hi < 0) {
			hi = v;
			continue;
		}
		assert_true(n < max);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	assert_int_equal(hi, -1);
	return n;
}

static void assert_hex(const uint8_t *got, size_t len, const char *want_hex)
{
	uint8_t want[1024];
	size_t n = unhex(want_hex, want, sizeof(want));

	assert_int_equal(n, len);
	assert_memory_equal(got, want, len);
}

/* ---- AES-256-XTS: IEEE Std 1619-2007 Annex B, vectors 10-14 ----
 * Key1 = first 32 bytes, Key2 = last 32; 512-byte data units; data unit
 * sequence numbers 0xff, 0xffff, ... 0xffffffffff; PTX = 00 01 .. ff twice. */

static const char xts_v10_14_key[] =
    "2718281828459045235360287471352662497757247093699959574966967627"
    "3141592653589793238462643383279502884197169399375105820974944592";

struct xts_vector {
	const char *name;
	uint64_t dusn;
	const char *ctx;
};

static const struct xts_vector xts_vectors[] = {
    {
	.name = "IEEE 1619 vector 10",
	.dusn = 0xff,
	.ctx = "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e2"
	       "76f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3"
	       "095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89ae"
	       "ba122961d03a757123e9870f8acf1000020887891429ca2a3e7a7d7df7b10355165c8b"
	       "9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de18"
	       "34f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d"
	       "6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380a"
	       "d8fecb17b6ba02469a020a84e18e8f84252070c13e9f1f289be54fbc481457778f6160"
	       "15e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47"
	       "bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f9"
	       "0c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e"
	       "333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e"
	       "9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed43851ad77f16f541df"
	       "d269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa7"
	       "55c824bb5e54c4f36ffda9fcea70b9c6e693e148c151",
    },
    {
	.name = "IEEE 1619 vector 11",
	.dusn = 0xffff,
	.ctx = "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11e1d022"
	       "5438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2469ee4a4fa79"
	       "4e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d3d6e1dc6ca181d4b54"
	       "6179d55544aa7760c40d06741539c7e3cd9d2f6650b2013fd0eeb8c2b8e3d8d240ccae"
	       "2d4c98320a7442e1c8d75a42d6e6cfa4c2eca1798d158c7aecdf82490f24bb9b38e108"
	       "bcda12c3faf9a21141c3613b58367f922aaa26cd22f23d708dae699ad7cb40a8ad0b6e"
	       "2784973dcb605684c08b8d6998c69aac049921871ebb65301a4619ca80ecb485a31d74"
	       "4223ce8ddc2394828d6a80470c092f5ba413c3378fa6054255c6f9df4495862bbb3287"
	       "681f931b687c888abf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5"
	       "c0c24c8ab018bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474a"
	       "fb75bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c6309"
	       "4f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a7e20dbdf"
	       "308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca686e0d7345c69ed5"
	       "0cdc2a8b332b1f8824108ac937eb050585608ee734097fc09054fbff89eeaeea791f4a"
	       "7ab1f9868294a4f9e27b42af8100cb9d59cef9645803",
    },
    {
	.name = "IEEE 1619 vector 12",
	.dusn = 0xffffff,
	.ctx = "e387aaa58ba483afa7e8eb469778317ecf4cf573aa9d4eac23f2cdf914e4e200a8b490"
	       "e42ee646802dc6ee2b471b278195d60918ececb44bf79966f83faba0499298ebc699c0"
	       "c8634715a320bb4f075d622e74c8c932004f25b41e361025b5a87815391f6108fc4afa"
	       "6a05d9303c6ba68a128a55705d415985832fdeaae6c8e19110e84d1b1f199a2692119e"
	       "dc96132658f09da7c623efcec712537a3d94c0bf5d7e352ec94ae5797fdb377dc15511"
	       "50721adf15bd26a8efc2fcaad56881fa9e62462c28f30ae1ceaca93c345cf243b73f54"
	       "2e2074a705bd2643bb9f7cc79bb6e7091ea6e232df0f9ad0d6cf502327876d82207abf"
	       "2115cdacf6d5a48f6c1879a65b115f0f8b3cb3c59d15dd8c769bc014795a1837f3901b"
	       "5845eb491adfefe097b1fa30a12fc1f65ba22905031539971a10f2f36c321bb51331cd"
	       "efb39e3964c7ef079994f5b69b2edd83a71ef549971ee93f44eac3938fcdd61d01fa71"
	       "799da3a8091c4c48aa9ed263ff0749df95d44fef6a0bb578ec69456aa5408ae32c7af0"
	       "8ad7ba8921287e3bbee31b767be06a0e705c864a769137df28292283ea81a2480241b4"
	       "4d9921cdbec1bc28dc1fda114bd8e5217ac9d8ebafa720e9da4f9ace231cc949e5b96f"
	       "e76ffc21063fddc83a6b8679c00d35e09576a875305bed5f36ed242c8900dd1fa965bc"
	       "950dfce09b132263a1eef52dd6888c309f5a7d712826",
    },
    {
	.name = "IEEE 1619 vector 13",
	.dusn = 0xffffffff,
	.ctx = "bf53d2dade78e822a4d949a9bc6766b01b06a8ef70d26748c6a7fc36d80ae4c5520f7c"
	       "4ab0ac8544424fa405162fef5a6b7f229498063618d39f0003cb5fb8d1c86b643497da"
	       "1ff945c8d3bedeca4f479702a7a735f043ddb1d6aaade3c4a0ac7ca7f3fa5279bef56f"
	       "82cd7a2f38672e824814e10700300a055e1630b8f1cb0e919f5e942010a416e2bf48cb"
	       "46993d3cb6a51c19bacf864785a00bc2ecff15d350875b246ed53e68be6f55bd7e05cf"
	       "c2b2ed6432198a6444b6d8c247fab941f569768b5c429366f1d3f00f0345b96123d562"
	       "04c01c63b22ce78baf116e525ed90fdea39fa469494d3866c31e05f295ff21fea8d4e6"
	       "e13d67e47ce722e9698a1c1048d68ebcde76b86fcf976eab8aa9790268b7068e017a8b"
	       "9b749409514f1053027fd16c3786ea1bac5f15cb79711ee2abe82f5cf8b13ae73030ef"
	       "5b9e4457e75d1304f988d62dd6fc4b94ed38ba831da4b7634971b6cd8ec325d9c61c00"
	       "f1df73627ed3745a5e8489f3a95c69639c32cd6e1d537a85f75cc844726e8a72fc0077"
	       "ad22000f1d5078f6b866318c668f1ad03d5a5fced5219f2eabbd0aa5c0f460d183f044"
	       "04a0d6f469558e81fab24a167905ab4c7878502ad3e38fdbe62a41556cec3732575953"
	       "3ce8f25f367c87bb5578d667ae93f9e2fd99bcbc5f2fbba88cf6516139420fcff3b736"
	       "1d86322c4bd84c82f335abb152c4a93411373aaa8220",
    },
    {
	.name = "IEEE 1619 vector 14",
	.dusn = 0xffffffffffULL,
	.ctx = "64497e5a831e4a932c09be3e5393376daa599548b816031d224bbf50a818ed2350eae7"
	       "e96087c8a0db51ad290bd00c1ac1620857635bf246c176ab463be30b808da548081ac8"
	       "47b158e1264be25bb0910bbc92647108089415d45fab1b3d2604e8a8eff1ae4020cfa3"
	       "9936b66827b23f371b92200be90251e6d73c5f86de5fd4a950781933d79a28272b782a"
	       "2ec313efdfcc0628f43d744c2dc2ff3dcb66999b50c7ca895b0c64791eeaa5f29499fb"
	       "1c026f84ce5b5c72ba1083cddb5ce45434631665c333b60b11593fb253c5179a2c8db8"
	       "13782a004856a1653011e93fb6d876c18366dd8683f53412c0c180f9c848592d593f86"
	       "09ca736317d356e13e2bff3a9f59cd9aeb19cd482593d8c46128bb32423b37a9adfb48"
	       "2b99453fbe25a41bf6feb4aa0bef5ed24bf73c762978025482c13115e4015aac992e56"
	       "13a3b5c2f685b84795cb6e9b2656d8c88157e52c42f978d8634c43d06fea928f2822e4"
	       "65aa6576e9bf419384506cc3ce3c54ac1a6f67dc66f3b30191e698380bc999b05abce1"
	       "9dc0c6dcc2dd001ec535ba18deb2df1a101023108318c75dc98611a09dc48a0acdec67"
	       "6fabdf222f07e026f059b672b56e5cbc8e1d21bbd867dd927212054681d70ea737134c"
	       "dfce93b6f82ae22423274e58a0821cc5502e2d0ab4585e94de6975be5e0b4efce51cd3"
	       "e70c25a1fbbbd609d273ad5b0d59631c531f6a0a57b9",
    },
};

static void test_xts_ieee1619_vectors(void **state)
{
	uint8_t key[64], ptx[512], ctx[512], buf[512];
	struct td_xts *x;

	assert_int_equal(unhex(xts_v10_14_key, key, sizeof(key)), 64);
	for (int i = 0; i < 512; i++)
		ptx[i] = (uint8_t)i;
	x = td_xts_new(key);
	assert_non_null(x);
	for (size_t v = 0; v < sizeof(xts_vectors) / sizeof(xts_vectors[0]); v++) {
		const struct xts_vector *tv = &xts_vectors[v];

		print_message("%s\n", tv->name);
		assert_int_equal(unhex(tv->ctx, ctx, sizeof(ctx)), 512);
		assert_int_equal(td_xts_encrypt(x, tv->dusn, ptx, buf, 512), 0);
		assert_memory_equal(buf, ctx, 512);
		assert_int_equal(td_xts_decrypt(x, tv->dusn, ctx, buf, 512), 0);
		assert_memory_equal(buf, ptx, 512);
	}
	td_xts_free(x);
}

/* XTS-AES-256 with a one-block data unit and a 40-bit tweak (Brian
 * Gladman's XTS test values, xts.6 vector 30, as carried by BoringSSL's
 * xts_test.cc). */
static void test_xts_single_block_vector(void **state)
{
	uint8_t key[64], pt[16], ct[16], buf[16];
	struct td_xts *x;

	unhex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0"
	      "bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0afaeadacabaaa9a8a7a6a5a4a3a2a1a0",
	      key, sizeof(key));
	unhex("000102030405060708090a0b0c0d0e0f", pt, sizeof(pt));
	unhex("c30ca8f2ed57307edc87e544867ac888", ct, sizeof(ct));
	x = td_xts_new(key);
	assert_non_null(x);
	assert_int_equal(td_xts_encrypt(x, 0x123456789aULL, pt, buf, 16), 0);
	assert_memory_equal(buf, ct, 16);
	assert_int_equal(td_xts_decrypt(x, 0x123456789aULL, ct, buf, 16), 0);
	assert_memory_equal(buf, pt, 16);
	td_xts_free(x);
}

static void test_xts_behaviour(void **state)
{
	enum { BS = 4096, N = 4 };
	static uint8_t pt[N * BS], ct[N * BS], buf[N * BS], one[BS];
	uint8_t key[64];
	struct td_xts *x;

	assert_int_equal(td_random_bytes(key, sizeof(key)), 0);
	assert_int_equal(td_random_bytes(pt, sizeof(pt)), 0);
	x = td_xts_new(key);
	assert_non_null(x);

	/* Round trip. */
	assert_int_equal(td_xts_encrypt(x, 7, pt, ct, BS), 0);
	assert_memory_not_equal(ct, pt, BS);
	assert_int_equal(td_xts_decrypt(x, 7, ct, buf, BS), 0);
	assert_memory_equal(buf, pt, BS);

	/* The tweak matters: same plaintext at two sectors, two ciphertexts;
	 * the wrong sector does not decrypt. */
	assert_int_equal(td_xts_encrypt(x, 8, pt, buf, BS), 0);
	assert_memory_not_equal(buf, ct, BS);
	assert_int_equal(td_xts_decrypt(x, 8, ct, buf, BS), 0);
	assert_memory_not_equal(buf, pt, BS);

	/* In place. */
	memcpy(buf, pt, BS);
	assert_int_equal(td_xts_encrypt(x, 7, buf, buf, BS), 0);
	assert_memory_equal(buf, ct, BS);
	assert_int_equal(td_xts_decrypt(x, 7, buf, buf, BS), 0);
	assert_memory_equal(buf, pt, BS);

	/* Interleaved directions on the same object. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(td_xts_encrypt(x, 7, pt, buf, BS), 0);
		assert_memory_equal(buf, ct, BS);
		assert_int_equal(td_xts_decrypt(x, 7, buf, buf, BS), 0);
		assert_memory_equal(buf, pt, BS);
	}

	/* The multi-block helper is the per-block loop with sector + i. */
	assert_int_equal(td_xts_encrypt_blocks(x, 100, BS, pt, ct, N), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(td_xts_encrypt(x, 100 + (uint64_t)i, pt + i * BS, one, BS), 0);
		assert_memory_equal(one, ct + i * BS, BS);
	}
	assert_int_equal(td_xts_decrypt_blocks(x, 100, BS, ct, buf, N), 0);
	assert_memory_equal(buf, pt, sizeof(pt));
	assert_int_equal(td_xts_encrypt_blocks(x, 5, BS, pt, ct, 0), 0);
	assert_int_equal(td_xts_encrypt_blocks(x, UINT64_MAX, BS, pt, ct, 2), -EINVAL);

	/* Bad lengths and arguments. */
	assert_int_equal(td_xts_encrypt(x, 0, pt, buf, 0), -EINVAL);
	assert_int_equal(td_xts_encrypt(x, 0, pt, buf, 15), -EINVAL);
	assert_int_equal(td_xts_encrypt(x, 0, pt, buf, 17), -EINVAL);
	assert_int_equal(td_xts_encrypt(x, 0, pt, buf, (size_t)TD_XTS_MAX_UNIT + 16), -EINVAL);
	assert_int_equal(td_xts_decrypt(x, 0, NULL, buf, 16), -EINVAL);
	assert_int_equal(td_xts_encrypt(NULL, 0, pt, buf, 16), -EINVAL);
	assert_int_equal(td_xts_encrypt_blocks(x, 0, 100, pt, buf, 1), -EINVAL);
	td_xts_free(x);

	errno = 0;
	assert_null(td_xts_new(NULL));
	assert_int_equal(errno, EINVAL);
	/* Two equal key halves are refused (IEEE 1619 / SP 800-38E). */
	memset(key, 0x42, sizeof(key));
	assert_null(td_xts_new(key));
	td_xts_free(NULL);
}

/* ---- SHA-256: FIPS 180-2 examples ---- */

static void test_sha256(void **state)
{
	uint8_t out[32];
	struct td_sha256 *s;

	assert_int_equal(td_sha256("abc", 3, out), 0);
	assert_hex(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(td_sha256(NULL, 0, out), 0);
	assert_hex(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	s = td_sha256_new();
	assert_non_null(s);
	assert_int_equal(td_sha256_update(s, "a", 1), 0);
	assert_int_equal(td_sha256_update(s, "bc", 2), 0);
	assert_int_equal(td_sha256_final(s, out), 0);
	assert_hex(out, 32, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* final resets: the next message starts fresh. */
	assert_int_equal(td_sha256_final(s, out), 0);
	assert_hex(out, 32, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	td_sha256_free(s);
}

/* ---- HMAC-SHA256: RFC 4231 test cases 1, 2, 3, 4, 6, 7 ---- */

static const char rfc4231_tc6_data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
static const char rfc4231_tc7_data[] =
    "This is a test using a larger than block-size key and a larger than block-size data. "
    "The key needs to be hashed before being used by the HMAC algorithm.";

static void test_hmac_rfc4231(void **state)
{
	uint8_t key[131], data[50], out[32];

	memset(key, 0x0b, 20);
	assert_int_equal(td_hmac_sha256(key, 20, "Hi There", 8, out), 0);
	assert_hex(out, 32, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

	assert_int_equal(td_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out), 0);
	assert_hex(out, 32, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

	memset(key, 0xaa, 20);
	memset(data, 0xdd, 50);
	assert_int_equal(td_hmac_sha256(key, 20, data, 50, out), 0);
	assert_hex(out, 32, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

	for (int i = 0; i < 25; i++)
		key[i] = (uint8_t)(i + 1);
	memset(data, 0xcd, 50);
	assert_int_equal(td_hmac_sha256(key, 25, data, 50, out), 0);
	assert_hex(out, 32, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

	memset(key, 0xaa, 131);
	assert_int_equal(td_hmac_sha256(key, 131, rfc4231_tc6_data, strlen(rfc4231_tc6_data), out),
			 0);
	assert_hex(out, 32, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

	assert_int_equal(td_hmac_sha256(key, 131, rfc4231_tc7_data, strlen(rfc4231_tc7_data), out),
			 0);
	assert_hex(out, 32, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* One keyed context, many messages, messages split across updates. */
static void test_hmac_reuse(void **state)
{
	uint8_t key[131], out[32];
	struct td_hmac *h;

	memset(key, 0xaa, sizeof(key));
	h = td_hmac_new(key, sizeof(key));
	assert_non_null(h);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(td_hmac_begin(h), 0);
		assert_int_equal(td_hmac_update(h, rfc4231_tc6_data, 10), 0);
		assert_int_equal(
		    td_hmac_update(h, rfc4231_tc6_data + 10, strlen(rfc4231_tc6_data) - 10), 0);
		assert_int_equal(td_hmac_end(h, out), 0);
		assert_hex(out, 32,
			   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

		assert_int_equal(td_hmac_begin(h), 0);
		assert_int_equal(td_hmac_update(h, rfc4231_tc7_data, strlen(rfc4231_tc7_data)), 0);
		assert_int_equal(td_hmac_end(h, out), 0);
		assert_hex(out, 32,
			   "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
	}
	/* update/end outside begin..end is refused. */
	assert_int_equal(td_hmac_update(h, "x", 1), -EINVAL);
	assert_int_equal(td_hmac_end(h, out), -EINVAL);
	td_hmac_free(h);
	td_hmac_free(NULL);
}

/* ---- HKDF-SHA256: RFC 5869 appendix A.1, A.2, A.3 ---- */

static void test_hkdf_rfc5869(void **state)
{
	uint8_t ikm[80], salt[80], info[80], okm[82];

	/* A.1 */
	memset(ikm, 0x0b, 22);
	for (int i = 0; i < 13; i++)
		salt[i] = (uint8_t)i;
	for (int i = 0; i < 10; i++)
		info[i] = (uint8_t)(0xf0 + i);
	assert_int_equal(td_hkdf_sha256(salt, 13, ikm, 22, info, 10, okm, 42), 0);
	assert_hex(okm, 42,
		   "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
		   "34007208d5b887185865");

	/* A.2: longer inputs and output */
	for (int i = 0; i < 80; i++) {
		ikm[i] = (uint8_t)i;
		salt[i] = (uint8_t)(0x60 + i);
		info[i] = (uint8_t)(0xb0 + i);
	}
	assert_int_equal(td_hkdf_sha256(salt, 80, ikm, 80, info, 80, okm, 82), 0);
	assert_hex(okm, 82,
		   "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
		   "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
		   "cc30c58179ec3e87c14c01d5c1f3434f1d87");

	/* A.3: zero-length salt and info */
	memset(ikm, 0x0b, 22);
	assert_int_equal(td_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm, 42), 0);
	assert_hex(okm, 42,
		   "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
		   "9d201395faa4b61a96c8");

	assert_int_equal(td_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm, 0), -EINVAL);
	assert_int_equal(td_hkdf_sha256(NULL, 0, ikm, 22, NULL, 0, okm, 255 * 32 + 1), -EINVAL);
}

/* ---- PBKDF2-HMAC-SHA256: RFC 7914 section 11 ---- */

static void test_pbkdf2_rfc7914(void **state)
{
	uint8_t out[64];

	assert_int_equal(td_kdf_pbkdf2_sha256("passwd", 6, "salt", 4, 1, out, 64), 0);
	assert_hex(out, 64,
		   "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
		   "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");

	assert_int_equal(td_kdf_pbkdf2_sha256("Password", 8, "NaCl", 4, 80000, out, 64), 0);
	assert_hex(out, 64,
		   "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
		   "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d");

	assert_int_equal(td_kdf_pbkdf2_sha256("p", 1, "s", 1, 0, out, 64), -EINVAL);
}

/* ---- scrypt: RFC 7914 section 12, first two vectors ---- */

static void test_scrypt_rfc7914(void **state)
{
	uint8_t out[64];

	assert_int_equal(td_kdf_scrypt("", 0, "", 0, 16, 1, 1, out, 64), 0);
	assert_hex(out, 64,
		   "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
		   "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906");

	assert_int_equal(td_kdf_scrypt("password", 8, "NaCl", 4, 1024, 8, 16, out, 64), 0);
	assert_hex(out, 64,
		   "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
		   "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");

	assert_int_equal(td_kdf_scrypt("p", 1, "s", 1, 1000, 8, 1, out, 64), -EINVAL);
	assert_int_equal(td_kdf_scrypt("p", 1, "s", 1, 1, 8, 1, out, 64), -EINVAL);
	assert_int_equal(td_kdf_scrypt("p", 1, "s", 1, 16, 0, 1, out, 64), -EINVAL);
}

/* ---- Argon2id ---- */

/* RFC 9106 section 5.3: with secret and associated data. */
static void test_argon2id_rfc9106(void **state)
{
	uint8_t pw[32], salt[16], secret[8], ad[12], out[32];

	memset(pw, 0x01, sizeof(pw));
	memset(salt, 0x02, sizeof(salt));
	memset(secret, 0x03, sizeof(secret));
	memset(ad, 0x04, sizeof(ad));
	assert_int_equal(
	    td_kdf_argon2id_ext(pw, 32, salt, 16, secret, 8, ad, 12, 3, 32, 4, out, 32), 0);
	assert_hex(out, 32, "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
}

/* The reference implementation's own vectors (phc-winner-argon2
 * src/test.c, Argon2id v1.3, "password" / "somesalt"), through the
 * simple API that the keyslots use. */
static void test_argon2id_reference(void **state)
{
	uint8_t out[32];

	assert_int_equal(td_kdf_argon2id("password", 8, "somesalt", 8, 2, 256, 1, out, 32), 0);
	assert_hex(out, 32, "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe");

	assert_int_equal(td_kdf_argon2id("password", 8, "somesalt", 8, 2, 256, 2, out, 32), 0);
	assert_hex(out, 32, "6d093c501fd5999645e0ea3bf620d7b8be7fd2db59c20d9fff9539da2bf57037");

	assert_int_equal(td_kdf_argon2id("password", 8, "somesalt", 8, 2, 65536, 1, out, 32), 0);
	assert_hex(out, 32, "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7");

	/* Below Argon2's minimum memory (8 KiB per lane) and zero passes. */
	assert_int_equal(td_kdf_argon2id("password", 8, "somesalt", 8, 2, 4, 1, out, 32), -EINVAL);
	assert_int_equal(td_kdf_argon2id("password", 8, "somesalt", 8, 0, 64, 1, out, 32), -EINVAL);
}

/* ---- AES-256-GCM ---- */

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
 * (256-bit key, 96-bit IV, 60-byte plaintext, 20-byte AAD). */
static void test_aead_gcm_vector(void **state)
{
	uint8_t key[32], nonce[12], aad[20], pt[60], ct[60], buf[60], tag[16];

	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
	unhex("cafebabefacedbaddecaf888", nonce, 12);
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
	      pt, 60);
	assert_int_equal(td_aead_seal(key, nonce, aad, 20, pt, 60, ct, tag), 0);
	assert_hex(ct, 60,
		   "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
		   "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
	assert_hex(tag, 16, "76fc6ece0f4e1768cddf8853bb2d551b");
	assert_int_equal(td_aead_open(key, nonce, aad, 20, ct, 60, tag, buf), 0);
	assert_memory_equal(buf, pt, 60);
}

static void test_aead_tamper(void **state)
{
	uint8_t key[32], nonce[12], pt[64], ct[64], buf[64], tag[16], zero[64] = {0};
	const char aad[] = "uuid||slot||params";

	td_random_bytes(key, sizeof(key));
	td_random_bytes(nonce, sizeof(nonce));
	td_random_bytes(pt, sizeof(pt));
	assert_int_equal(td_aead_seal(key, nonce, aad, sizeof(aad), pt, 64, ct, tag), 0);
	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), 0);
	assert_memory_equal(buf, pt, 64);

	ct[5] ^= 1;
	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), -EBADMSG);
	assert_memory_equal(buf, zero, 64); /* no unauthenticated plaintext left */
	ct[5] ^= 1;

	tag[15] ^= 0x80;
	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), -EBADMSG);
	tag[15] ^= 0x80;

	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad) - 1, ct, 64, tag, buf),
			 -EBADMSG);
	nonce[0] ^= 1;
	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), -EBADMSG);
	nonce[0] ^= 1;
	key[31] ^= 1;
	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), -EBADMSG);
	key[31] ^= 1;

	assert_int_equal(td_aead_open(key, nonce, aad, sizeof(aad), ct, 64, tag, buf), 0);
	assert_memory_equal(buf, pt, 64);
}

/* ---- misc ---- */

static void test_ct_memeq_and_random(void **state)
{
	uint8_t a[64], b[64], zero[64] = {0};

	assert_int_equal(td_random_bytes(a, sizeof(a)), 0);
	assert_int_equal(td_random_bytes(b, sizeof(b)), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_int_equal(td_random_bytes(NULL, 0), 0);

	memcpy(b, a, sizeof(a));
	assert_int_equal(td_ct_memeq(a, b, sizeof(a)), 1);
	b[0] ^= 1;
	assert_int_equal(td_ct_memeq(a, b, sizeof(a)), 0);
	b[0] ^= 1;
	b[63] ^= 0x80;
	assert_int_equal(td_ct_memeq(a, b, sizeof(a)), 0);
	assert_int_equal(td_ct_memeq(a, b, 63), 1);
	assert_int_equal(td_ct_memeq(a, b, 0), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xts_ieee1619_vectors),
	    cmocka_unit_test(test_xts_single_block_vector),
	    cmocka_unit_test(test_xts_behaviour),
	    cmocka_unit_test(test_sha256),
	    cmocka_unit_test(test_hmac_rfc4231),
	    cmocka_unit_test(test_hmac_reuse),
	    cmocka_unit_test(test_hkdf_rfc5869),
	    cmocka_unit_test(test_pbkdf2_rfc7914),
	    cmocka_unit_test(test_scrypt_rfc7914),
	    cmocka_unit_test(test_argon2id_rfc9106),
	    cmocka_unit_test(test_argon2id_reference),
	    cmocka_unit_test(test_aead_gcm_vector),
	    cmocka_unit_test(test_aead_tamper),
	    cmocka_unit_test(test_ct_memeq_and_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
