/* Products of many residues modulo one odd modulus, in Montgomery form on GMP's mpn layer.
 *
 * The two loops that dominate vertical FL's cost, each a long run of multiplications modulo one
 * odd m of N 64-bit limbs (R = 2^(64 N), REDC as GMP's own redc_1):
 *
 *   fixed_base_table  the rows base^(d * 2^(w i)), d < 2^w, of a fixed-base exponentiation table;
 *   fixed_base_pow    prod_i row_i[digit_i] for many digit vectors (DJN encryption's h_s^a);
 *   bin_products      per bin, the product of the values of the rows that fall in it, column by
 *                     column (the homomorphic sums of an encrypted histogram).
 *
 * A multiplication here costs about two-thirds of gmpy2's `a * b % m` and no interpreter round
 * trip. Residues cross the boundary as N * 8 little-endian bytes each; tables stay in Montgomery
 * form; everything returned is in normal form. The loops run without the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <gmp.h>
#include <stdint.h>
#include <string.h>

/* The Python side reads and writes residues as little-endian 64-bit limbs. */
#if GMP_LIMB_BITS != 64 || GMP_NAIL_BITS != 0
#error "fedalgo's Montgomery loops need GMP with 64-bit limbs and no nails"
#endif
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fedalgo's Montgomery loops need a little-endian machine"
#endif

#define LIMB_BYTES ((Py_ssize_t)sizeof(mp_limb_t))

typedef struct {
    const mp_limb_t *m;
    mp_size_t n;
    mp_limb_t minv;  /* -m^-1 mod 2^64 */
    mp_limb_t *one;  /* R mod m: 1 in Montgomery form */
    mp_limb_t *r2;   /* R^2 mod m: turns a residue into Montgomery form */
    mp_limb_t *unit; /* the residue 1: turns Montgomery form back */
    mp_limb_t *scratch; /* 2n limbs for products */
} Modulus;

static void modulus_free(Modulus *M) {
    PyMem_Free(M->one);
    PyMem_Free(M->r2);
    PyMem_Free(M->unit);
    PyMem_Free(M->scratch);
    M->one = M->r2 = M->unit = M->scratch = NULL;
}

static int check_aligned(const Py_buffer *b, const char *what) {
    if (((uintptr_t)b->buf) % sizeof(mp_limb_t)) {
        PyErr_Format(PyExc_ValueError, "%s is not aligned to 64-bit limbs", what);
        return -1;
    }
    return 0;
}

/* R^k mod m for k = 1, 2 (a one followed by k * n zero limbs, divided by m). */
static int power_of_r(mp_limb_t *out, const Modulus *M, int k) {
    mp_size_t nn = k * M->n + 1;
    mp_limb_t *num = PyMem_Calloc(nn, LIMB_BYTES);
    mp_limb_t *q = PyMem_Malloc((nn - M->n + 1) * LIMB_BYTES);
    if (!num || !q) {
        PyMem_Free(num);
        PyMem_Free(q);
        PyErr_NoMemory();
        return -1;
    }
    num[nn - 1] = 1;
    mpn_tdiv_qr(q, out, 0, num, nn, M->m, M->n);
    PyMem_Free(num);
    PyMem_Free(q);
    return 0;
}

static int modulus_init(Modulus *M, const Py_buffer *b) {
    memset(M, 0, sizeof *M);
    if (b->len <= 0 || b->len % LIMB_BYTES) {
        PyErr_SetString(PyExc_ValueError, "the modulus must be whole 64-bit limbs");
        return -1;
    }
    if (check_aligned(b, "the modulus") < 0) return -1;
    M->m = (const mp_limb_t *)b->buf;
    M->n = b->len / LIMB_BYTES;
    if (M->m[M->n - 1] == 0 || !(M->m[0] & 1) || (M->n == 1 && M->m[0] == 1)) {
        PyErr_SetString(PyExc_ValueError,
                        "the modulus must be odd, above 1, with a non-zero top limb");
        return -1;
    }
    mp_limb_t x = 1; /* Newton's iteration doubles the correct low bits: 1, 2, 4, ..., 64 */
    for (int i = 0; i < 6; i++) x *= 2 - M->m[0] * x;
    M->minv = -x;
    M->one = PyMem_Malloc(M->n * LIMB_BYTES);
    M->r2 = PyMem_Malloc(M->n * LIMB_BYTES);
    M->unit = PyMem_Calloc(M->n, LIMB_BYTES);
    M->scratch = PyMem_Malloc(2 * M->n * LIMB_BYTES);
    if (!M->one || !M->r2 || !M->unit || !M->scratch) {
        modulus_free(M);
        PyErr_NoMemory();
        return -1;
    }
    M->unit[0] = 1;
    if (power_of_r(M->one, M, 1) < 0 || power_of_r(M->r2, M, 2) < 0) {
        modulus_free(M);
        return -1;
    }
    return 0;
}

/* r = a * b / R mod m, for a, b < m; r may alias a or b. */
static void mont_mul(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b, const Modulus *M) {
    mp_size_t n = M->n;
    mp_limb_t *t = M->scratch;
    if (a == b)
        mpn_sqr(t, a, n);
    else
        mpn_mul_n(t, a, b, n);
    /* Each step zeroes the lowest limb; its carry out is parked there and added at the end. */
    for (mp_size_t j = 0; j < n; j++) t[j] = mpn_addmul_1(t + j, M->m, n, t[j] * M->minv);
    mp_limb_t carry = mpn_add_n(r, t + n, t, n);
    if (carry || mpn_cmp(r, M->m, n) >= 0) mpn_sub_n(r, r, M->m, n);
}

/* Each of `count` residues (n limbs apiece) must be below m. */
static int check_residues(const mp_limb_t *v, Py_ssize_t count, const Modulus *M,
                          const char *what) {
    for (Py_ssize_t i = 0; i < count; i++) {
        if (mpn_cmp(v + i * M->n, M->m, M->n) >= 0) {
            PyErr_Format(PyExc_ValueError, "%s %zd is not below the modulus", what, i);
            return -1;
        }
    }
    return 0;
}

static int check_window(int w) {
    if (w < 1 || w > 16) {
        PyErr_Format(PyExc_ValueError, "window_bits must be in 1..16, got %d", w);
        return -1;
    }
    return 0;
}

/* A bytes object for `count` runs of `limbs` limbs, its buffer in *data. */
static PyObject *new_bytes(Py_ssize_t count, Py_ssize_t limbs, char **data) {
    if (count > PY_SSIZE_T_MAX / LIMB_BYTES / limbs) return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * limbs * LIMB_BYTES);
    if (out) *data = PyBytes_AS_STRING(out);
    return out;
}

PyDoc_STRVAR(fixed_base_table_doc,
             "fixed_base_table(base, modulus, digits, window_bits) -> bytes\n\n"
             "Rows i < digits of base^(d * 2^(window_bits * i)) for every d < 2^window_bits, in\n"
             "Montgomery form, as limbs; base and modulus as little-endian limbs.");

static PyObject *fixed_base_table(PyObject *self, PyObject *args) {
    Py_buffer base, mod;
    Py_ssize_t digits;
    int w;
    if (!PyArg_ParseTuple(args, "y*y*ni", &base, &mod, &digits, &w)) return NULL;
    PyObject *out = NULL;
    Modulus M;
    if (modulus_init(&M, &mod) < 0) goto done;
    if (check_window(w) < 0) goto done;
    if (digits < 1) {
        PyErr_SetString(PyExc_ValueError, "a table needs at least one digit");
        goto done;
    }
    if (base.len != M.n * LIMB_BYTES) {
        PyErr_SetString(PyExc_ValueError, "the base must be as long as the modulus");
        goto done;
    }
    if (check_aligned(&base, "the base") < 0 || check_residues(base.buf, 1, &M, "the base") < 0)
        goto done;
    Py_ssize_t row = ((Py_ssize_t)1 << w) * M.n;
    char *data;
    out = new_bytes(digits, row, &data);
    if (!out) goto done;
    mp_limb_t *t = (mp_limb_t *)data, *b = PyMem_Malloc(M.n * LIMB_BYTES);
    if (!b) {
        Py_CLEAR(out);
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    mont_mul(b, base.buf, M.r2, &M);
    for (Py_ssize_t i = 0; i < digits; i++, t += row) {
        memcpy(t, M.one, M.n * LIMB_BYTES);
        memcpy(t + M.n, b, M.n * LIMB_BYTES);
        for (Py_ssize_t d = 2; d < ((Py_ssize_t)1 << w); d++)
            mont_mul(t + d * M.n, t + (d - 1) * M.n, b, &M);
        mont_mul(b, t + row - M.n, b, &M); /* base^(2^(w (i + 1))) */
    }
    Py_END_ALLOW_THREADS;
    PyMem_Free(b);
done:
    modulus_free(&M);
    PyBuffer_Release(&base);
    PyBuffer_Release(&mod);
    return out;
}

PyDoc_STRVAR(fixed_base_pow_doc,
             "fixed_base_pow(table, modulus, window_bits, exponents) -> bytes\n\n"
             "For each exponent (one uint16 digit per table row, least significant first), the\n"
             "product of its rows' entries: base^exponent mod modulus, as limbs.");

static PyObject *fixed_base_pow(PyObject *self, PyObject *args) {
    Py_buffer table, mod, exps;
    int w;
    if (!PyArg_ParseTuple(args, "y*y*iy*", &table, &mod, &w, &exps)) return NULL;
    PyObject *out = NULL;
    Modulus M;
    if (modulus_init(&M, &mod) < 0) goto done;
    if (check_window(w) < 0) goto done;
    Py_ssize_t row = ((Py_ssize_t)1 << w) * M.n;
    if (table.len == 0 || table.len % (row * LIMB_BYTES)) {
        PyErr_SetString(PyExc_ValueError, "the table is not whole rows of this modulus and window");
        goto done;
    }
    if (check_aligned(&table, "the table") < 0) goto done;
    Py_ssize_t digits = table.len / (row * LIMB_BYTES);
    if (exps.len % (digits * 2) || ((uintptr_t)exps.buf) % 2) {
        PyErr_Format(PyExc_ValueError, "exponents must be aligned uint16 rows of %zd digits",
                     digits);
        goto done;
    }
    Py_ssize_t count = exps.len / (digits * 2);
    const uint16_t *e = exps.buf;
    for (Py_ssize_t k = 0; k < count * digits; k++) {
        if (e[k] >> w) {
            PyErr_Format(PyExc_ValueError, "digit %zd is not below 2^%d", k, w);
            goto done;
        }
    }
    char *data;
    out = new_bytes(count, M.n, &data);
    if (!out) goto done;
    mp_limb_t *r = (mp_limb_t *)data;
    const mp_limb_t *t = table.buf;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t k = 0; k < count; k++, e += digits, r += M.n) {
        int started = 0; /* the accumulator starts as the first non-zero digit's entry */
        for (Py_ssize_t i = 0; i < digits; i++) {
            if (!e[i]) continue;
            const mp_limb_t *entry = t + i * row + e[i] * M.n;
            if (started) {
                mont_mul(r, r, entry, &M);
            } else {
                memcpy(r, entry, M.n * LIMB_BYTES);
                started = 1;
            }
        }
        if (started)
            mont_mul(r, r, M.unit, &M);
        else
            memcpy(r, M.unit, M.n * LIMB_BYTES);
    }
    Py_END_ALLOW_THREADS;
done:
    modulus_free(&M);
    PyBuffer_Release(&table);
    PyBuffer_Release(&mod);
    PyBuffer_Release(&exps);
    return out;
}

PyDoc_STRVAR(bin_products_doc,
             "bin_products(values, bins, columns, total_bins, modulus) -> bytes\n\n"
             "values: one residue per row, as limbs; bins: int64, rows x columns, the bin of each\n"
             "row in each column. Per bin, the product mod modulus of the values of its rows in\n"
             "every column (1 for an empty bin), as limbs.");

static PyObject *bin_products(PyObject *self, PyObject *args) {
    Py_buffer values, bins, mod;
    Py_ssize_t columns, total;
    if (!PyArg_ParseTuple(args, "y*y*nny*", &values, &bins, &columns, &total, &mod)) return NULL;
    PyObject *out = NULL;
    mp_limb_t *v = NULL;
    Modulus M;
    if (modulus_init(&M, &mod) < 0) goto done;
    if (values.len % (M.n * LIMB_BYTES)) {
        PyErr_SetString(PyExc_ValueError, "the values are not whole residues of the modulus");
        goto done;
    }
    if (check_aligned(&values, "the values") < 0) goto done;
    Py_ssize_t rows = values.len / (M.n * LIMB_BYTES);
    if (columns < 0 || total < 1 || (columns && rows > PY_SSIZE_T_MAX / 8 / columns) ||
        bins.len != rows * columns * 8) {
        PyErr_Format(PyExc_ValueError, "bins must be %zd rows of %zd int64 columns", rows, columns);
        goto done;
    }
    if (check_aligned(&bins, "the bins") < 0) goto done;
    const int64_t *bin = bins.buf;
    for (Py_ssize_t k = 0; k < rows * columns; k++) {
        if (bin[k] < 0 || bin[k] >= total) {
            PyErr_Format(PyExc_ValueError, "bin %lld of row %zd is not in [0, %zd)",
                         (long long)bin[k], k / columns, total);
            goto done;
        }
    }
    if (check_residues(values.buf, rows, &M, "value") < 0) goto done;
    char *data;
    out = new_bytes(total, M.n, &data);
    v = PyMem_Malloc(M.n * LIMB_BYTES);
    if (!out || !v) {
        Py_CLEAR(out);
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    mp_limb_t *acc = (mp_limb_t *)data;
    const mp_limb_t *x = values.buf;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t b = 0; b < total; b++) memcpy(acc + b * M.n, M.one, M.n * LIMB_BYTES);
    for (Py_ssize_t i = 0; i < rows; i++, x += M.n, bin += columns) {
        mont_mul(v, x, M.r2, &M);
        for (Py_ssize_t j = 0; j < columns; j++) {
            mp_limb_t *a = acc + bin[j] * M.n;
            mont_mul(a, a, v, &M);
        }
    }
    for (Py_ssize_t b = 0; b < total; b++) mont_mul(acc + b * M.n, acc + b * M.n, M.unit, &M);
    Py_END_ALLOW_THREADS;
done:
    PyMem_Free(v);
    modulus_free(&M);
    PyBuffer_Release(&values);
    PyBuffer_Release(&bins);
    PyBuffer_Release(&mod);
    return out;
}

static PyMethodDef methods[] = {
    {"fixed_base_table", fixed_base_table, METH_VARARGS, fixed_base_table_doc},
    {"fixed_base_pow", fixed_base_pow, METH_VARARGS, fixed_base_pow_doc},
    {"bin_products", bin_products, METH_VARARGS, bin_products_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_montgomery",
    .m_doc = "Products of many residues modulo one odd modulus, in Montgomery form (GMP mpn).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__montgomery(void) { return PyModule_Create(&module); }
